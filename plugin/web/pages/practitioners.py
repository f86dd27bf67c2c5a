"""The site's practitioner table's page (config/practitioners.yaml): who is listed with which
role, an entry added, changed or removed, its history, a rollback."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, session, url_for

from plugin.config.edits import save_table, table_content
from plugin.config.tables import PRACTITIONERS
from plugin.errors import Invalid
from plugin.rules.visit import Role
from plugin.store.config import StaleVersion
from plugin.web.pages.common import CHANGERS, bp, roll_back, signed_in
from plugin.web.state import app_state

FIELDS = ("key", "role", "name", "source", "reason", "expect", "remove")


def _page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          status: int = 200) -> Any:  # fmt: skip
    state = app_state()
    content, version = table_content(state.store, state.settings, PRACTITIONERS)
    page = render_template(
        "practitioners.html",
        content=content,
        version=version,
        versions=state.store.config_versions(PRACTITIONERS.kind, PRACTITIONERS.name),
        roles=[r.value for r in Role],
        form=form or {},
        errors=errors or {},
        can_edit=session.get("role") in CHANGERS,
    )
    return page, status


@bp.route("/admin/practitioners")
@signed_in()
def practitioners() -> Any:
    return _page()


def _entry_key(entry: dict[str, Any]) -> str:
    return str(entry.get("reference") or entry.get("npi") or "")


@bp.route("/admin/practitioners/entry", methods=["POST"])
@signed_in(*CHANGERS)
def practitioner_entry() -> Any:
    """Add or change the entry of one practitioner (a reference `Practitioner/x` or a
    10-digit NPI), or remove it; saved as a new version with the reason."""
    form = {k: request.form.get(k, "").strip() for k in FIELDS}
    state = app_state()
    content, _ = table_content(state.store, state.settings, PRACTITIONERS)
    key = form["key"]
    kept = [e for e in content.get("practitioners") or () if _entry_key(e) != key]
    if not form["remove"]:
        entry: dict[str, Any] = {"role": form["role"], "source": form["source"]}
        entry["npi" if key.isdigit() else "reference"] = key
        if form["name"]:
            entry["name"] = form["name"]
        kept.append(entry)
    changed = {**content, "practitioners": kept}
    expect = int(form["expect"]) if form["expect"].isdigit() else None
    try:
        version = save_table(
            state.store, state.settings, PRACTITIONERS, changed, session["who"], form["reason"],
            expect,
        )  # fmt: skip
    except Invalid as exc:
        return _page(form, exc.field_map, 422)
    except StaleVersion as exc:
        return _page(form, {"version": str(exc)}, 409)
    state.refresh()
    flash(f"Saved the practitioner table, version {version}.", "notice")
    return redirect(url_for("pages.practitioners"))


@bp.route("/admin/practitioners/rollback", methods=["POST"])
@signed_in(*CHANGERS)
def practitioners_rollback() -> Any:
    return roll_back(
        PRACTITIONERS.kind,
        PRACTITIONERS.name,
        PRACTITIONERS.title,
        "from the practitioners page",
        url_for("pages.practitioners"),
    )
