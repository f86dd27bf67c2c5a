"""The pages of the tables an admin replaces whole (the registry, plugin/config/tables.py: payer
rules, fee schedule, documentation vocabulary, practitioners, charge outlet): the version in
force with the sources it cites, its history in words, a diff between any two versions, an
edit with the API's validation and a reason, a rollback. And the audit log.

The edit is the table as YAML: the shape of its shipped file, saved by the same function the
admin API saves with (plugin/config/edits.save_table), so a page and the API refuse the same
content with the same words."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

import yaml
from flask import abort, flash, redirect, render_template, request, session, url_for

from plugin.config.edits import save_table, table_content
from plugin.config.tables import TABLES, Table, json_content
from plugin.errors import Invalid
from plugin.store.config import StaleVersion
from plugin.web.pages.common import CHANGERS, bp, roll_back, signed_in
from plugin.web.state import app_state

BY_PATH = {t.path: t for t in TABLES}
# what each table is, in the words of the people who keep it
ABOUT = {
    "payers": "Which counting method each payer uses, how its coverage is recognised, its "
    "modifiers, NCCI and episode policies, and the findings it treats differently.",
    "fees": "The fee schedule: the amount of each code from each effective date.",
    "vocabulary": "The words the documentation checks read treatment notes with: activities "
    "and their codes, abbreviations and misspellings, words that are not activities, tasks and "
    "their steps, section labels, skill and measure patterns. Try a change with "
    "`theracharge vocabulary evaluate tests/corpus/ --draft FILE` before saving it.",
    "practitioners": "The role of practitioners whose EHR record does not say it (therapist or "
    "assistant, by discipline).",
    "outlet": "Where charges go and how: the HL7 v2 or Oracle Health settings of the site.",
}


def _table(path: str) -> Table:
    table = BY_PATH.get(path)
    if table is None:
        abort(404, f"no table {path!r}: the tables are {', '.join(BY_PATH)}")
    return table


def sources(content: Any) -> list[str]:
    """Every source the content cites (its `source` and `*_source` fields), once each."""
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if (key == "source" or key.endswith("_source")) and isinstance(item, str):
                    found[item] = None
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(content)
    return list(found)


def as_yaml(content: Any) -> str:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True, width=100)


@bp.app_template_filter("diff_words")
def diff_words(entry: dict[str, Any]) -> str:
    """One entry of a table's stored diff as a sentence: "payer medicare-b changed",
    "97110 from 2026-01-01: 31.20 → 32.00", "concept 97110 … terms added: nordics"."""
    change = str(entry.get("change") or "changed")
    if "concept" in entry:
        parts = [f"concept {entry['concept']} {change}"]
        if entry.get("terms_added"):
            parts.append(f"terms added: {', '.join(entry['terms_added'])}")
        if entry.get("terms_removed"):
            parts.append(f"terms removed: {', '.join(entry['terms_removed'])}")
        return "; ".join(parts)
    if "code" in entry and "effective" in entry:
        return (
            f"{entry['code']} from {entry['effective']}: "
            f"{entry.get('before') or '—'} → {entry.get('after') or '—'} ({change})"
        )
    for key in ("payer", "section", "field", "practitioner", "entry"):
        if key in entry:
            said = f"{key} {entry[key]} {change}"
            if "before" in entry or "after" in entry:
                said += f": {entry.get('before')} → {entry.get('after')}"
            return said
    return ", ".join(f"{k} {v}" for k, v in entry.items())


@bp.route("/admin/tables")
@signed_in()
def tables() -> str:
    """Every table replaced whole, its version in force and its last change."""
    state = app_state()
    rows = []
    for table in TABLES:
        versions = state.store.config_versions(table.kind, table.name)
        rows.append({"table": table, "about": ABOUT.get(table.path, table.summary),
                     "last": versions[0] if versions else None})  # fmt: skip
    return render_template("tables.html", rows=rows)


def _page(
    table: Table,
    text: str | None = None,
    reason: str = "",
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Any:
    state = app_state()
    content, version = table_content(state.store, state.settings, table)
    versions = state.store.config_versions(table.kind, table.name)
    compared = _compared(table, content, versions)
    page = render_template(
        "table.html",
        table=table,
        about=ABOUT.get(table.path, table.summary),
        content=as_yaml(content),
        sources=sources(content),
        version=version,
        versions=versions,
        text=as_yaml(content) if text is None else text,
        reason=reason,
        errors=errors or {},
        compared=compared,
        can_edit=session.get("role") in CHANGERS,
    )
    return page, status


def _compared(table: Table, content: dict[str, Any], versions: list[Any]) -> dict[str, Any]:
    """The diff between the two versions the page asks for (?a=&b=; 0 is the shipped file)."""
    a, b = request.args.get("a", ""), request.args.get("b", "")
    if not (a.isdigit() and b.isdigit()):
        return {}
    by_number = {v.version: v.content for v in versions}
    by_number[0] = table.shipped(app_state().settings)

    def text(number: int) -> list[str]:
        if number not in by_number:
            abort(404, f"{table.title} has no version {number}")
        return as_yaml(by_number[number] or {}).splitlines()

    lines = list(
        difflib.unified_diff(
            text(int(a)), text(int(b)), f"version {a}", f"version {b}", lineterm=""
        )
    )
    return {"a": int(a), "b": int(b), "lines": lines}


@bp.route("/admin/tables/<path>")
@signed_in()
def table(path: str) -> Any:
    return _page(_table(path))


@bp.route("/admin/tables/<path>", methods=["POST"])
@signed_in(*CHANGERS)
def save(path: str) -> Any:
    """The table edited as YAML, saved as a new version with the reason — or the page again
    with what is wrong, nothing stored."""
    table = _table(path)
    text, reason = request.form.get("content", ""), request.form.get("reason", "").strip()
    expect = request.form.get("expect", "")
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return _page(table, text, reason, {"content": f"not YAML: {exc}"}, 422)
    if not isinstance(content, dict):
        return _page(table, text, reason, {"content": "the table is a mapping of fields"}, 422)
    content = json_content(content)
    state = app_state()
    try:
        version = save_table(
            state.store,
            state.settings,
            table,
            content,
            session["who"],
            reason,
            int(expect) if expect.isdigit() else None,
        )
    except Invalid as exc:
        errors = exc.field_map
        if set(errors) == {"reason"}:
            errors = {"reason": str(exc).partition(": ")[2] or errors["reason"]}
        return _page(table, text, reason, errors, 422)
    except StaleVersion as exc:
        return _page(table, text, reason, {"version": str(exc)}, 409)
    state.refresh()
    flash(f"Saved {table.title}, version {version}.", "notice")
    return redirect(url_for("pages.table", path=path))


@bp.route("/admin/tables/<path>/rollback", methods=["POST"])
@signed_in(*CHANGERS)
def table_rollback(path: str) -> Any:
    table = _table(path)
    reason = request.form.get("reason", "").strip() or "from the table's page"
    return roll_back(table.kind, table.name, table.title, reason, url_for("pages.table", path=path))


AUDIT_FILTERS = ("actor", "object_type", "object_id", "since", "until")


@bp.route("/admin/audit")
@signed_in()
def audit() -> str:
    """Who changed what, when and why, newest first; filtered by who, what, and a period."""
    query = {k: request.args.get(k, "").strip() for k in AUDIT_FILTERS}
    filters = {k: query[k] for k in ("actor", "object_type", "object_id") if query[k]}
    since, until = _day(query["since"]), _day(query["until"], end=True)
    entries = app_state().store.audit_entries(limit=500, since=since, until=until, **filters)
    return render_template("audit.html", entries=entries, query=query)


def _day(text: str, end: bool = False) -> datetime | None:
    try:
        day = datetime.fromisoformat(text)
    except ValueError:
        return None
    if end and len(text) == 10:
        day = day.replace(hour=23, minute=59, second=59)
    return day if day.tzinfo else day.replace(tzinfo=UTC)


@bp.app_template_filter("audit_words")
def audit_words(detail: Any) -> str:
    """An audit entry's detail as words: its version and reason first."""
    if not isinstance(detail, dict):
        return str(detail or "")
    parts = []
    if "version" in detail:
        parts.append(f"version {detail['version']}")
    if detail.get("reason"):
        parts.append(f"why: {detail['reason']}")
    parts += [f"{k.replace('_', ' ')}: {v}" for k, v in detail.items()
              if k not in ("version", "reason")]  # fmt: skip
    return "; ".join(parts)
