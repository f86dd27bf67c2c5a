"""A visit's decision page, and its re-run (a one-day re-decision, as a backfill's days are)."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from flask import abort, flash, redirect, render_template, session, url_for

from plugin.pipeline.tasks import decide_backfill_day
from plugin.web.pages.common import WORKERS, bp, signed_in
from plugin.web.state import app_state


@bp.route("/decisions/<encounter_id>")
@signed_in()
def decision(encounter_id: str) -> str:
    runs = [r for r in app_state().store.runs(encounter_id, limit=20) if r.report]
    if not runs:
        abort(404, f"no decision for Encounter/{encounter_id} yet")
    can_rerun = session.get("role") in WORKERS and app_state().gatherer() is not None
    return render_template(
        "decision.html",
        encounter=encounter_id,
        run=runs[0],
        report=runs[0].report,
        can_rerun=can_rerun,
    )


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
