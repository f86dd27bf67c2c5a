"""A visit's decision page, and its re-run (a one-day re-decision, as a backfill's days are)."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from flask import abort, flash, redirect, render_template, session, url_for

from plugin.pipeline.tasks import decide_backfill_day
from plugin.web.pages.common import (
    DISCIPLINES,
    WORDS,
    WORKERS,
    bp,
    person,
    signed_in,
    unnamed,
)
from plugin.web.state import app_state


@bp.route("/decisions/<encounter_id>")
@signed_in()
def decision(encounter_id: str) -> str:
    runs = [r for r in app_state().store.runs(encounter_id, limit=20) if r.report]
    if not runs:
        abort(404, f"no decision for Encounter/{encounter_id} yet")
    can_rerun = session.get("role") in WORKERS and app_state().gatherer() is not None
    report: dict[str, Any] = dict(runs[0].report or {})
    return render_template(
        "decision.html",
        encounter=encounter_id,
        run=runs[0],
        report=report,
        visit=visit_words(report),
        written=written_words(runs[0].written),
        can_rerun=can_rerun,
    )


METHODS = {
    "cms": "Medicare 8-minute rule on total timed minutes (CMS Pub 100-04 ch.5 §20.2)",
    "ama": "AMA per-code rule: each timed code's own minutes (CPT time rule)",
}


def visit_words(report: dict[str, Any]) -> dict[str, Any]:
    """A decision as people name it: the patient, the date, the disciplines, who treated and
    who supervised, the payer by name and its method in words, and where each finding is — the
    service's code and time ("97110, 10:00–10:30") rather than a resource id."""
    lines = [ln for ln in report.get("lines") or () if isinstance(ln, dict)]
    disciplines = sorted({str(ln.get("discipline")) for ln in lines if ln.get("discipline")})
    therapists: dict[str, str] = {}
    for line in lines:
        for t in line.get("therapists") or ():
            therapists.setdefault(str(t.get("reference")), person(t))
    supervisors = sorted({str(s) for ln in lines for s in ln.get("supervisors") or ()})
    where: dict[str, str] = {}
    for line in lines:
        for ref in line.get("procedures") or ():
            time = (line.get("times") or {}).get(ref)
            where[str(ref)] = f"{line.get('code')}, {time}" if time else f"{line.get('code')}"
    payer = app_state().settings.payers.by_id(report.get("payer"))
    return {
        "patient": report.get("patient_name") or unnamed(report.get("patient"), "patient"),
        "mrn": report.get("patient_mrn") or "",
        "born": report.get("patient_birth_date") or "",
        "date": report.get("date_of_service") or "no date of service",
        "disciplines": ", ".join(DISCIPLINES.get(d, d) for d in disciplines) or "therapy",
        "therapists": list(therapists.values()),
        "supervisors": [therapists.get(s) or unnamed(s, "therapist") for s in supervisors],
        "payer": payer.name if payer else (report.get("payer") or "no known payer"),
        "method": METHODS.get(str(report.get("method")), str(report.get("method"))),
        "where": where,
    }


def where_words(problem: dict[str, Any], where: dict[str, str]) -> str:
    """Where a finding is, in words: the service ("97110, 10:00–10:30"), the visit, the
    patient's coverage …"""
    resource = str(problem.get("resource") or "")
    kind = resource.partition("/")[0]
    if resource in where:
        return f"the service {where[resource]}"
    return {
        "Encounter": "the visit",
        "Patient": "the patient's record",
        "Coverage": "the visit's coverage",
        "Practitioner": "the therapist's record",
        "PractitionerRole": "the therapist's role",
        "Condition": "a diagnosis",
        "Observation": "a measurement",
        "DocumentReference": "the plan of care",
        "CarePlan": "the plan of care",
        "ChargeItem": "a charge",
    }.get(kind, resource if resource else "the billing day")


@bp.app_template_filter("where_words")
def _where_filter(problem: dict[str, Any], where: dict[str, str]) -> str:
    return where_words(problem, where)


def written_words(written: Any) -> list[str]:
    """What a run wrote, as counts and codes: "created: 2 charge lines (97110, 97112)"."""
    if not isinstance(written, dict):
        return []
    said = []
    for what, keys in written.items():
        if isinstance(keys, list) and keys:
            codes = ", ".join(dict.fromkeys(str(k).rpartition("/")[2] for k in keys))
            noun = "charge line" if len(keys) == 1 else "charge lines"
            said.append(f"{WORDS.get(what, what.replace('_', ' '))}: {len(keys)} {noun} ({codes})")
        elif isinstance(keys, int | str) and keys not in ("", 0):
            said.append(f"{WORDS.get(what, what.replace('_', ' '))}: {keys}")
    return said


@bp.route("/decisions/<encounter_id>/rerun", methods=["POST"])
@signed_in(*WORKERS)
def rerun(encounter_id: str) -> Any:
    """The visit's billing day decided again and written: a re-decision run of one day, the
    same task a backfill's days are (docs/deployment.md) — on a worker when there is a broker,
    waited for up to RERUN_WAIT seconds, else here."""
    state = app_state()
    if state.gatherer() is None:
        abort(503, "no EHR configured")
    latest = state.store.runs(encounter_id, limit=1)
    named = latest[0].day if latest else None
    when = (named or "").rpartition("|")[2] or date.today().isoformat()
    actor = f"page:{session['who']}"
    _, (day_id,) = state.store.create_backfill(actor, when, when, False, [(encounter_id, named)])
    if state.send is None:
        decide_backfill_day(state, day_id)
    else:
        state.queue("backfill-day", day_id)
        _wait_for(state.store, day_id)
    flash(*_rerun_said(state.store.backfill_day(day_id)))
    return redirect(url_for("pages.decision", encounter_id=encounter_id))


RERUN_WAIT = 20.0  # seconds a page waits for its re-run on a worker; then it says it is queued


def _wait_for(store: Any, day_id: int) -> None:
    deadline = time.monotonic() + RERUN_WAIT
    while time.monotonic() < deadline:
        row = store.backfill_day(day_id)
        if row is None or row.status in ("done", "failed") or row.last_error:
            return
        time.sleep(0.1)


def _rerun_said(row: Any) -> tuple[str, str]:
    """What the page says of its re-run: done (and how), failed (why, and whether it is tried
    again), or still queued."""
    if row is not None and row.status == "done":
        return f"Re-run done: {row.outcome}.", "notice"
    if row is not None and row.status == "failed":
        return f"Re-run failed: {row.last_error} (set aside on the worklist).", "problem"
    if row is not None and row.last_error:
        return f"Re-run failed: {row.last_error}; it is tried again shortly.", "problem"
    return "Re-run queued: this page shows its decision when a worker has made it.", "notice"
