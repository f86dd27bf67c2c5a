"""The mapping tables' pages: what each maps, its history, an entry edited, a rollback."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, session, url_for

from plugin.config.edits import save_mapping, with_mapping_entry
from plugin.config.effective import MAPPING
from plugin.errors import Invalid
from plugin.rules.systems import CPT, HCPCS, ICD10CM, NUCC, SNOMED
from plugin.store.config import StaleVersion
from plugin.web.pages.common import CHANGERS, bp, roll_back, signed_in
from plugin.web.state import app_state


@bp.route("/admin/mappings")
@signed_in()
def mappings() -> str:
    """Each table as what it maps (source system → target), how many entries, and its last
    change: when, who, why."""
    store = app_state().store
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
    store = app_state().store
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
    state = app_state()
    current = state.store.config_current(MAPPING, name)
    if current is None or current.content is None:
        abort(404, f"no mapping table {name!r}")
    target = {k: form[k] for k in ("equivalence", "comment")}
    content = with_mapping_entry(
        current.content,
        state.settings.catalog,
        form["system"],
        form["code"],
        {"code": form["target"], **target},
    )
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


@bp.route("/admin/mappings/<name>/rollback", methods=["POST"])
@signed_in(*CHANGERS)
def rollback(name: str) -> Any:
    return roll_back(
        MAPPING, name, name, "from the mappings page", url_for("pages.mapping", name=name)
    )
