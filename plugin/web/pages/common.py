"""What every page shares: the blueprint, the words people read, signing in by role, CSRF."""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, request, session, url_for

from plugin.config.edits import rollback
from plugin.errors import Invalid
from plugin.render.report import STATUS_WORDS
from plugin.web.state import app_state

bp = Blueprint("pages", __name__, template_folder="../templates")

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


@bp.app_template_filter("when")
def when(value: object) -> str:
    """A moment with its time zone: the store keeps UTC (SQLite without its offset)."""
    if not isinstance(value, datetime):
        return str(value or "")
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_filter("finding_title")
def finding_title(code: object) -> str:
    """A finding code's title, as every page, card and report says it."""
    kind = app_state().settings.findings.types.get(str(code))
    return kind.title if kind is not None and kind.title else str(code)


@bp.app_template_filter("finding_fixed_by")
def finding_fixed_by(code: object) -> str:
    kind = app_state().settings.findings.types.get(str(code))
    return kind.fixed_by if kind is not None else ""


@bp.app_template_filter("finding_fix")
def finding_fix(code: object) -> str:
    kind = app_state().settings.findings.types.get(str(code))
    return kind.fix if kind is not None else ""


@bp.app_template_filter("person")
def person(t: dict[str, Any]) -> str:
    """A therapist as billing staff look them up: "Sam Rivera, DPT (NPI 1300000019)"; one the
    EHR sent no name for, "unknown therapist (id unknown-staff)"."""
    name = str(t.get("name") or "")
    if not name:
        return unnamed(t.get("reference"), "therapist")
    credential = f", {t['credential']}" if t.get("credential") else ""
    npi = f" (NPI {t['npi']})" if t.get("npi") else ""
    return f"{name}{credential}{npi}"


def unnamed(reference: object, what: str) -> str:
    """Someone the EHR sent no name for: "unknown therapist (id unknown-staff)"."""
    ref = str(reference or "")
    return f"unknown {what} (id {ref.rpartition('/')[2]})" if ref else f"unknown {what}"


DISCIPLINES = {
    "PT": "physical therapy",
    "OT": "occupational therapy",
    "SLP": "speech-language pathology",
}


@bp.app_context_processor
def _disciplines() -> dict[str, Any]:
    return {"disciplines": DISCIPLINES}


SEVERITY_WORDS = {"hold": "holds the line", "warn": "warning", "info": "for information"}


@bp.app_template_filter("severity_words")
def severity_words(value: object) -> str:
    return SEVERITY_WORDS.get(str(value), str(value))


@bp.app_template_filter("words")
def words(value: object) -> str:
    """What a status or a ledger key reads as on a page."""
    return WORDS.get(str(value), str(value).replace("_", " "))


CHANGERS = ("admin",)
WORKERS = ("admin", "billing")


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


# A small mark for the browser tab: a dark blue rounded square with a white "T" (no file to ship)
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#17324d"/>'
    '<path d="M8 9h16v4h-6v12h-4V13H8z" fill="#fff"/></svg>'
)


@bp.route("/favicon.svg", endpoint="favicon")
@bp.route("/favicon.ico", endpoint="favicon_ico")
def favicon() -> Response:
    return Response(FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def roll_back(kind: str, name: str, title: str, reason: str, back: str) -> Any:
    """A rollback asked for from a page (the form's `version`): a new version with an earlier
    one's content (history is never rewritten), or why not; then back to the table's page."""
    version = request.form.get("version", "")
    if not version.isdigit():
        abort(400, "version: a version number")
    state = app_state()
    try:
        saved = rollback(
            state.store, state.settings, kind, name, int(version), session["who"], reason
        )
    except (LookupError, Invalid) as exc:
        flash(f"Not rolled back: {exc}", "problem")
        return redirect(back)
    state.refresh()
    flash(f"Rolled back {title} to version {version}: now version {saved}.", "notice")
    return redirect(back)
