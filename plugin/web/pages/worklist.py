"""The hold worklist, the billing manager's dashboard, and set-aside work put back in the queue."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for
from markupsafe import Markup

from plugin.render.charts import STATUS_COLOURS, bars, stacked_columns
from plugin.render.dashboard import REVIEW_MINUTES_PER_UNIT, dashboard, latest_date
from plugin.render.report import line_reasons
from plugin.store.queue import KINDS
from plugin.web.pages.common import WORDS, WORKERS, bp, finding_title, signed_in
from plugin.web.params import date_arg
from plugin.web.state import app_state


@bp.route("/worklist")
@signed_in()
def worklist() -> str:
    filters = {
        k: request.args.get(k, "").strip()
        for k in ("date", "discipline", "payer", "gap", "provider", "show")
    }
    filters["show"] = filters["show"] if filters["show"] in SHOW else "held"
    lines = [
        {**line, "encounter": _encounter_id(line.get("encounter")) or run.encounter_id}
        for run in app_state().store.latest_runs()
        for line in run.lines
        if isinstance(line, dict)
    ]
    shown = [row for row in lines if _shown(row, filters["show"])]
    rows = [row for row in shown if _matches(row, filters)]
    sort, order = request.args.get("sort", "date"), request.args.get("order", "asc")
    sort = sort if sort in SORTS else "date"
    rows.sort(key=SORTS[sort], reverse=order == "desc")  # oldest first by default
    held, warned = line_reasons(rows)  # as the run summary and the demo count them
    table = app_state().settings.payers
    # the payer's name, as billing staff know it (the filter keeps its id)
    payer_names = {
        str(r.get("payer")): (
            p.name if (p := table.by_id(str(r.get("payer")))) else "no known payer"
        )
        for r in lines
    }
    return render_template(
        "worklist.html",
        set_aside=app_state().store.dead_letters(limit=200),
        may_retry=session.get("role") in WORKERS,
        rows=rows,
        filters=filters,
        sort=sort,
        order=order,
        filtered=any(v for k, v in filters.items() if k != "show"),
        show=SHOW,
        counts=held.most_common(),
        warning_counts=warned.most_common(),
        payers=sorted(payer_names.items(), key=lambda item: item[1]),
        payer_names=payer_names,
        gaps=sorted({c for r in shown for c in (*r.get("holds", ()), *(r.get("warnings") or ()))}),
    )


# What the worklist shows: held lines (the default), lines billed with warnings, or both
SHOW = {"held": "held lines", "warnings": "lines with warnings", "all": "held or warned"}


def _shown(row: dict[str, Any], show: str) -> bool:
    """Held lines; lines billed with warnings (billable ones only: a 0-unit line is not
    billed, whatever its warnings); or either."""
    held = row.get("status") == "planned"
    warned = bool(row.get("warnings")) and row.get("status") == "billable"
    return {"held": held, "warnings": warned, "all": held or warned}[show]


def _first_time(row: dict[str, Any]) -> str:
    times = row.get("times") or {}
    return min(times.values()) if isinstance(times, dict) and times else ""


def _therapist(row: dict[str, Any]) -> str:
    people = row.get("therapists") or ()
    return str(people[0].get("name") or people[0].get("reference") or "") if people else ""


# The worklist's columns it sorts by (?sort=…&order=asc|desc); the date and time by default
SORTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "date": lambda r: f"{r.get('date') or ''} {_first_time(r)}",
    "patient": lambda r: str((r.get("patient") or {}).get("name") or ""),
    "discipline": lambda r: str(r.get("discipline") or ""),
    "code": lambda r: str(r.get("code") or ""),
    "payer": lambda r: str(r.get("payer") or ""),
    "therapist": _therapist,
}


@bp.route("/dashboard")
@signed_in()
def manager_dashboard() -> str:
    """The billing manager's page: a period's charges by status, holds and how fast they are
    fixed, units per code, minutes per unit by therapist (plugin.render.dashboard)."""
    runs = app_state().store.runs(limit=20_000)
    given_until, given_since = date_arg("until"), date_arg("since")
    defaulted = ""
    if given_until is None and given_since is None:
        # no period asked for: the latest 30 days that hold charges, said on the page
        latest = latest_date(runs)
        until = date.fromisoformat(latest) if latest else date.today()
        defaulted = (
            f"No period chosen: the 30 days to {until.isoformat()}, the latest date of service "
            "with charges."
            if latest
            else "No period chosen, and no charges yet: the last 30 days."
        )
    else:
        until = given_until or date.today()
    since = given_since or until - timedelta(days=30)
    if since > until:
        abort(400, "since: the period must start before it ends")
    figures = dashboard(runs, since.isoformat(), until.isoformat())
    charts = {
        "status": Markup(
            stacked_columns(
                "Charge lines by status per date of service",
                figures.by_date,
                STATUS_COLOURS,
                WORDS,
            )
        ),
        "holds": Markup(
            bars(
                "Billing days held, by reason",
                [(finding_title(h.code), h.seen) for h in figures.holds[:10]],
            )
        ),
        "units": Markup(bars("Units billed per code", figures.units_by_code[:15], "units")),
        "minutes": Markup(
            bars(
                "Minutes per unit by therapist",
                [(who, round(mpu, 1)) for who, mpu, _, _ in figures.minutes_per_unit],
                "min/unit",
                marker=REVIEW_MINUTES_PER_UNIT,
                flag_below=REVIEW_MINUTES_PER_UNIT,
            )
        ),
    }
    return render_template(
        "dashboard.html",
        figures=figures,
        charts=charts,
        review=REVIEW_MINUTES_PER_UNIT,
        defaulted=defaulted,
    )


def _encounter_id(reference: object) -> str | None:
    """`Encounter/123` → `123` (the decision pages are by encounter id)."""
    return reference.split("/", 1)[-1] if isinstance(reference, str) and reference else None


def _matches(row: dict[str, Any], filters: dict[str, str]) -> bool:
    if filters["date"] and row.get("date") != filters["date"]:
        return False
    if filters["discipline"] and row.get("discipline") != filters["discipline"]:
        return False
    if filters["payer"] and str(row.get("payer")) != filters["payer"]:
        return False
    if filters["gap"] and filters["gap"] not in (
        *row.get("holds", ()),
        *(row.get("warnings") or ()),
    ):
        return False
    if not filters["provider"]:
        return True
    wanted = filters["provider"].lower()
    people = [str(row.get("provider") or "")] + [
        f"{t.get('name', '')} {t.get('npi', '')} {t.get('reference', '')}"
        for t in row.get("therapists") or ()
    ]
    return any(wanted in who.lower() for who in people)


@bp.route("/worklist/notifications/<int(max=2147483647):notification_id>/retry", methods=["POST"])
@signed_in(*WORKERS)
def retry_notification(notification_id: int) -> Any:
    """A set-aside notification back in the queue, once its cause is fixed (audited)."""
    return _retry("notification", notification_id)


@bp.route("/worklist/dead-letters/<kind>/<int(max=2147483647):row_id>/retry", methods=["POST"])
@signed_in(*WORKERS)
def retry_dead_letter(kind: str, row_id: int) -> Any:
    """Any set-aside work (a notification, a backfill's day) back in the queue (audited)."""
    if kind not in KINDS:
        abort(404, f"no kind of work {kind!r}")
    return _retry(kind, row_id)


def _retry(kind: str, row_id: int) -> Any:
    row, queued = app_state().retry(kind, row_id, str(session["who"]))
    if row is None:
        abort(404, f"no {kind} {row_id}")
    if queued:
        flash(
            f"Encounter/{row.encounter_id} is queued again; it is processed within seconds.",
            "notice",
        )
    else:
        flash(f"{kind.capitalize()} {row_id} is {row.status}, not set aside.", "problem")
    return redirect(url_for("pages.worklist", _anchor="set-aside"))
