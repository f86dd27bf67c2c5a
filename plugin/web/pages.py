"""Server-rendered pages: the hold worklist, a visit's decision, the mapping tables.

Signed in with an API token (its role decides what the page offers); the session cookie is
signed with the instance's secret key; every form carries a CSRF token.
"""

from __future__ import annotations

import copy
import hmac
import secrets
import time
from datetime import date, timedelta
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from markupsafe import Markup

from plugin.config.edits import rollback as rollback_table
from plugin.config.edits import save_mapping
from plugin.config.effective import MAPPING
from plugin.config.tokens import token_hash
from plugin.errors import Invalid
from plugin.pipeline.tasks import decide_backfill_day
from plugin.render.charts import STATUS_COLOURS, bars, stacked_columns
from plugin.render.dashboard import REVIEW_MINUTES_PER_UNIT, dashboard
from plugin.render.report import STATUS_WORDS, line_reasons
from plugin.rules.systems import CPT, HCPCS, ICD10CM, NUCC, SNOMED
from plugin.store.config import StaleVersion
from plugin.store.queue import KINDS
from plugin.web.params import date_arg

bp = Blueprint("pages", __name__, template_folder="templates")

# The words people read for what FHIR and our ledger call things (issue 17: "held", not the
# ChargeItem status `planned`; no snake_case on a page).
WORDS = {
    **STATUS_WORDS,
    "created": "created",
    "updated": "updated",
    "unchanged": "unchanged",
    "entered_in_error": "set entered-in-error (no longer billed)",
    "corrections_needed": "corrections needed (already billed: a corrected claim)",
}


@bp.app_template_filter("words")
def words(value: object) -> str:
    """What a status or a ledger key reads as on a page."""
    return WORDS.get(str(value), str(value).replace("_", " "))


CHANGERS = ("admin",)
WORKERS = ("admin", "billing")


def _state() -> Any:
    return current_app.extensions["theracharge"]


def csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


@bp.app_context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf": csrf}


@bp.before_request
def _check_csrf() -> None:
    if request.method == "POST" and not hmac.compare_digest(
        request.form.get("csrf", ""), session.get("csrf", "-")
    ):
        abort(400, "the form expired; reload the page and try again")


def signed_in(*roles: str) -> Any:
    def decorate(view: Any) -> Any:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not session.get("who"):
                return redirect(url_for("pages.login", next=request.full_path))
            if roles and session.get("role") not in roles:
                abort(403, f"the {session.get('role')} role cannot do this")
            return view(*args, **kwargs)

        return wrapper

    return decorate


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = None
    if request.method == "POST":
        presented = token_hash(request.form.get("token", "").strip())
        tokens = _state().settings.service.api_tokens
        found = next(
            (who for digest, who in tokens.items() if hmac.compare_digest(digest, presented)), None
        )
        if found:
            session["who"], session["role"] = found
            return redirect(_same_site(request.form.get("next")) or url_for("pages.worklist"))
        error = "That token is not known."
    return render_template("login.html", error=error, next=_same_site(request.args.get("next")))


def _same_site(target: str | None) -> str:
    """`target` when it is a path on this site, else "" (no open redirect after sign-in).

    A browser reads `//host/x` and `/\\host/x` as another host, and drops tabs and line breaks
    from URLs before reading them (WHATWG URL Standard, "URL parsing"): so only a single
    leading slash, no backslash, no control character or white space.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return ""
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in target):
        return ""
    return target


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    return redirect(url_for("pages.login"))


@bp.route("/")
def home() -> Any:
    return redirect(url_for("pages.worklist"))


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
        for run in _state().store.latest_runs()
        for line in run.lines
        if isinstance(line, dict)
    ]
    shown = [row for row in lines if _shown(row, filters["show"])]
    rows = [row for row in shown if _matches(row, filters)]
    held, warned = line_reasons(rows)  # as the run summary and the demo count them
    table = _state().settings.payers
    # the payer's name, as billing staff know it (the filter keeps its id)
    payer_names = {
        str(r.get("payer")): (
            p.name if (p := table.by_id(str(r.get("payer")))) else "no known payer"
        )
        for r in lines
    }
    return render_template(
        "worklist.html",
        set_aside=_state().store.dead_letters(limit=200),
        may_retry=session.get("role") in WORKERS,
        rows=rows,
        filters=filters,
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
    held = row.get("status") == "planned"
    warned = bool(row.get("warnings"))
    return {"held": held, "warnings": warned and not held, "all": held or warned}[show]


@bp.route("/dashboard")
@signed_in()
def manager_dashboard() -> str:
    """The billing manager's page: a period's charges by status, holds and how fast they are
    fixed, units per code, minutes per unit by therapist (plugin.render.dashboard)."""
    today = date.today()
    until = date_arg("until") or today
    since = date_arg("since") or until - timedelta(days=30)
    if since > until:
        abort(400, "since: the period must start before it ends")
    figures = dashboard(_state().store.runs(limit=20_000), since.isoformat(), until.isoformat())
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
            bars("Billing days held, by reason", [(h.code, h.seen) for h in figures.holds[:10]])
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
        "dashboard.html", figures=figures, charts=charts, review=REVIEW_MINUTES_PER_UNIT
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


@bp.route("/decisions/<encounter_id>")
@signed_in()
def decision(encounter_id: str) -> str:
    runs = [r for r in _state().store.runs(encounter_id, limit=20) if r.report]
    if not runs:
        abort(404, f"no decision for Encounter/{encounter_id} yet")
    can_rerun = session.get("role") in WORKERS and _state().gatherer() is not None
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
    state = _state()
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
    row, queued = _state().retry(kind, row_id, str(session["who"]))
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


@bp.route("/admin/mappings")
@signed_in()
def mappings() -> str:
    """Each table as what it maps (source system → target), how many entries, and its last
    change: when, who, why."""
    store = _state().store
    rows = []
    for table in store.config_tables(MAPPING):
        current = store.config_current(MAPPING, table.name)
        content = (current.content if current else None) or {}
        groups = [g for g in content.get("group") or () if isinstance(g, dict)]
        versions = store.config_versions(MAPPING, table.name)
        rows.append(
            {
                "name": table.name,
                "title": content.get("title") or content.get("name") or table.name,
                "maps": [
                    f"{system_name(g.get('source'))} → {system_name(g.get('target'))}"
                    for g in groups
                ],
                "entries": sum(len(g.get("element") or ()) for g in groups),
                "version": table.version,
                "updated": table.updated,
                "author": table.author,
                "reason": versions[-1].reason if versions else "",
            }
        )
    return render_template("mappings.html", tables=rows)


# The code systems people know by name (plugin.rules.systems); others show their URL
SYSTEM_NAMES = {
    CPT: "CPT",
    HCPCS: "HCPCS",
    SNOMED: "SNOMED CT",
    ICD10CM: "ICD-10-CM",
    NUCC: "NUCC provider taxonomy",
}


@bp.app_template_filter("system_name")
def system_name(uri: object) -> str:
    """A code system as people call it: CPT, SNOMED CT …; the EHR's own by its URL."""
    return SYSTEM_NAMES.get(str(uri), str(uri or "unknown system"))


@bp.app_template_filter("change_words")
def change_words(change: dict[str, Any]) -> str:
    """One entry of a table's diff as a sentence: "PT-NMR (https://…) now bills as 97112,
    not 97110"."""
    source = str(change.get("source") or "")
    system, _, code = source.rpartition("|")
    what = f"{code} ({system_name(system)})" if system else source
    before, after = change.get("before"), change.get("after")
    if change.get("change") == "added":
        return f"{what} added: bills as {after}"
    if change.get("change") == "removed":
        return f"{what} removed (billed as {before})"
    return f"{what} now bills as {after}, not {before}"


def _mapping_page(
    name: str,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    store = _state().store
    current = store.config_current(MAPPING, name)
    if current is None:
        abort(404, f"no mapping table {name!r}")
    page = render_template(
        "mapping.html",
        name=name,
        version=current.version,
        content=current.content,
        versions=store.config_versions(MAPPING, name),
        form=form or {},
        errors=errors or {},
        can_edit=session.get("role") in CHANGERS,
    )
    return page, status


@bp.route("/admin/mappings/<name>")
@signed_in()
def mapping(name: str) -> Any:
    return _mapping_page(name)


@bp.route("/admin/mappings/<name>/entry", methods=["POST"])
@signed_in(*CHANGERS)
def edit_entry(name: str) -> Any:
    form = {
        k: request.form.get(k, "").strip()
        for k in ("system", "code", "target", "equivalence", "comment", "reason", "expect")
    }
    state = _state()
    current = state.store.config_current(MAPPING, name)
    if current is None or current.content is None:
        abort(404, f"no mapping table {name!r}")
    content = with_entry(current.content, form)
    expect = int(form["expect"]) if form["expect"].isdigit() else None
    try:
        version = save_mapping(
            state.store, state.settings, name, content, session["who"], form["reason"], expect
        )
    except Invalid as exc:
        return _mapping_page(name, form, exc.field_map, 422)
    except StaleVersion as exc:
        return _mapping_page(name, form, {"version": str(exc)}, 409)
    state.refresh()
    flash(f"Saved {name} version {version}.", "notice")
    return redirect(url_for("pages.mapping", name=name))


def with_entry(content: dict[str, Any], form: dict[str, str]) -> dict[str, Any]:
    """The table with one entry added or replaced, in the group of its source system."""
    table = copy.deepcopy(content)
    target = {
        "code": form["target"],
        "equivalence": form["equivalence"],
        "comment": form["comment"],
    }
    for group in table.get("group", []):
        for element in group.get("element", []):
            if group.get("source") == form["system"] and element.get("code") == form["code"]:
                element["target"] = [target]
                return table
    catalog = _state().settings.catalog
    definition = catalog.codes.get(form["target"])
    system = definition.system if definition else CPT
    group = next(
        (
            g
            for g in table.get("group", [])
            if g.get("source") == form["system"] and g.get("target") == system
        ),
        None,
    )
    if group is None:
        group = {"source": form["system"], "target": system, "element": []}
        table.setdefault("group", []).append(group)
    group["element"].append({"code": form["code"], "target": [target]})
    return table


@bp.route("/admin/mappings/<name>/rollback", methods=["POST"])
@signed_in(*CHANGERS)
def rollback(name: str) -> Any:
    version = request.form.get("version", "")
    if not version.isdigit():
        abort(400, "version: a version number")
    state = _state()
    try:
        saved = rollback_table(
            state.store,
            state.settings,
            MAPPING,
            name,
            int(version),
            session["who"],
            "from the mappings page",
        )
    except (LookupError, Invalid) as exc:
        flash(f"Not rolled back: {exc}", "problem")
        return redirect(url_for("pages.mapping", name=name))
    state.refresh()
    flash(f"Rolled back to version {version}: now version {saved}.", "notice")
    return redirect(url_for("pages.mapping", name=name))
