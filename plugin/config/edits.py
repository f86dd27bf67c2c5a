"""Admin operations on managed tables: validate whole, store a new version, audit it."""

from __future__ import annotations

import copy
import csv
import io
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import ValidationError

from plugin.config.effective import MAPPING, NCCI, NCCI_TABLES, mapping_diff, validate_mappings
from plugin.config.files import (
    MUE_COLUMNS,
    PTP_COLUMNS,
    Settings,
    csv_rows,
    ncci_from_rows,
    stored_rows,
)
from plugin.config.ncci_import import NcciFileError, mue_rows, ptp_rows
from plugin.config.tables import BY_KIND, FEES, Table
from plugin.errors import Invalid, NotFoundError, describe
from plugin.rules.code_mapping import resolve_code
from plugin.rules.model import Catalog
from plugin.rules.systems import CPT
from plugin.schemas.errors import ConfigError, field_errors
from plugin.store import Store


def _invalid(exc: ValidationError, prefix: str = "") -> Invalid:
    fields = [(path or "body", message) for path, message in field_errors(exc.messages, prefix)]
    return Invalid(describe(fields), fields)


def save_mapping(
    store: Store,
    settings: Settings,
    name: str,
    content: dict[str, Any] | None,
    author: str,
    reason: str,
    expect_version: int | None,
) -> int:
    """A new version of one mapping table (None deletes it), valid with every other table."""
    if not reason.strip():
        raise Invalid("reason: say why the table changes", [("reason", "required")])
    tables = {t.name: store.config_current(MAPPING, t.name) for t in store.config_tables(MAPPING)}
    contents = {n: v.content for n, v in tables.items() if v is not None and v.content}
    if content is None:
        contents.pop(name, None)
    else:
        contents[name] = content
    try:
        validate_mappings(contents, settings)
    except ValidationError as exc:
        raise _invalid(exc, "conceptMap") from exc
    version = store.config_save(
        MAPPING,
        name,
        content,
        author,
        reason,
        lambda previous: mapping_diff(previous, content),  # against the version it follows
        expect_version,
    )
    store.audit(
        author,
        "delete" if content is None else "save",
        "mapping",
        name,
        {"version": version, "reason": reason},
    )
    return version


def save_table(
    store: Store,
    settings: Settings,
    table: Table,
    content: dict[str, Any],
    author: str,
    reason: str,
    expect_version: int | None,
) -> int:
    """A new version of a table replaced whole (plugin/config/tables.py), with a reason and
    valid (its schema; the fields at fault named under the request's field): stored with its
    diff against the version it follows (the first, against the shipped file), audited."""
    if not reason.strip():
        raise Invalid(f"reason: say why {table.title} change", [("reason", "required")])
    try:
        table.load(content, settings)
    except ValidationError as exc:
        raise _invalid(exc, table.field) from exc
    version = store.config_save(
        table.kind,
        table.name,
        content,
        author,
        reason,
        lambda previous: table.diff(
            previous if previous is not None else table.shipped(settings), content
        ),
        expect_version,
    )
    store.audit(author, "save", table.kind, table.name, {"version": version, "reason": reason})
    return version


def rollback(
    store: Store, settings: Settings, kind: str, name: str, version: int, author: str, reason: str
) -> int:
    """A new version whose content is an earlier one's (history is never rewritten)."""
    earlier = next((v for v in store.config_versions(kind, name) if v.version == version), None)
    if earlier is None:
        raise LookupError(f"{kind} {name} has no version {version}")
    why = f"rollback to version {version}: {reason}"
    if kind == MAPPING:
        return save_mapping(store, settings, name, earlier.content, author, why, None)
    table = BY_KIND[kind]
    if earlier.content is None:
        raise Invalid(f"version: {table.title} cannot be deleted", [("version", str(version))])
    return save_table(store, settings, table, earlier.content, author, why, None)


def table_content(
    store: Store, settings: Settings, table: Table
) -> tuple[dict[str, Any], int | None]:
    """The table in force as JSON content, and its stored version: the admin's stored table,
    else the shipped file (its version None)."""
    current = store.config_current(table.kind, table.name)
    if current is not None and current.content:
        return dict(current.content), current.version
    return table.shipped(settings), None


_CODE_COLUMNS = ("code", "hcpcs", "hcpcs code", "cpt", "procedure code", "proc code")
_AMOUNT_COLUMNS = ("amount", "allowed", "allowed amount", "fee", "non-facility price", "par amount")
_MODIFIER_COLUMNS = ("modifier", "mod")


def _read_csv(text: str, filename: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV; one that is not CSV (a stray carriage return, an unclosed
    quote …) is refused by name, not a 500."""
    try:
        reader = csv.DictReader(io.StringIO(text))
        return list(reader.fieldnames or ()), list(reader)
    except csv.Error as exc:
        raise Invalid(f"{filename}: not readable as CSV ({exc})", [("file", "csv")]) from exc


def import_fee_schedule(
    store: Store,
    settings: Settings,
    text: str,
    filename: str,
    effective: date,
    source: str,
    author: str,
    reason: str,
) -> tuple[int, int]:
    """A CSV of allowed amounts (a code column and an amount column, by the usual names of
    MAC and PFS downloads; rows with a modifier are left out) as the schedule in force from
    `effective`, added to the stored fee schedule (or the shipped one), replacing a schedule of
    the same date. Rows of codes outside the catalog are left out. Returns (version, codes)."""
    fieldnames, rows = _read_csv(text, filename)
    columns = {(c or "").strip().lower(): c for c in fieldnames}
    code_column = next((columns[c] for c in _CODE_COLUMNS if c in columns), None)
    amount_column = next((columns[c] for c in _AMOUNT_COLUMNS if c in columns), None)
    modifier_column = next((columns[c] for c in _MODIFIER_COLUMNS if c in columns), None)
    if code_column is None or amount_column is None:
        wanted = f"a code column ({', '.join(_CODE_COLUMNS)}) and an amount column " + (
            f"({', '.join(_AMOUNT_COLUMNS)})"
        )
        raise Invalid(f"{filename}: needs {wanted}", [("file", "columns")])
    amounts: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        code = (row.get(code_column) or "").strip().upper()
        if code not in settings.catalog.codes or (
            modifier_column and (row.get(modifier_column) or "").strip()
        ):
            continue
        raw = (row.get(amount_column) or "").strip().lstrip("$").replace(",", "")
        try:
            amounts[code] = str(Decimal(raw))
        except InvalidOperation as exc:
            message = f"line {number}: {amount_column} {raw!r} is not an amount"
            raise Invalid(f"{filename}: {message}", [("file", message)]) from exc
    if not amounts:
        raise Invalid(f"{filename}: no amount for a code of the catalog", [("file", "empty")])
    content, _ = table_content(store, settings, FEES)
    schedules = [
        s for s in content.get("schedules") or () if s.get("effective") != effective.isoformat()
    ]
    schedules.append(
        {
            "effective": effective.isoformat(),
            "source": source or filename,
            "amounts": {k: float(v) for k, v in sorted(amounts.items())},
        }
    )
    content = {"currency": content.get("currency", "USD"), "schedules": schedules}
    version = save_table(store, settings, FEES, content, author, f"{reason} ({filename})", None)
    return version, len(amounts)


def try_coding(settings: Settings, codings: list[tuple[str, str]]) -> dict[str, Any]:
    """Which CPT/HCPCS code a procedure with these codings bills under, and why."""
    resolution = resolve_code(codings, settings.catalog, settings.code_map)
    body: dict[str, Any] = {
        "code": resolution.code,
        "how": resolution.how,
        "detail": resolution.detail,
    }
    if resolution.code:
        definition = settings.catalog[resolution.code]
        body.update(
            label=definition.label,
            kind=definition.kind.value,
            disciplines=[d.value for d in definition.disciplines],
        )
        mapped = next(
            (settings.code_map.entries[c] for c in codings if c in settings.code_map.entries), None
        )
        if mapped and resolution.how == "mapped":
            body["mapping"] = {
                "table": mapped.table,
                "equivalence": mapped.equivalence,
                "comment": mapped.comment,
            }
    return body


def _earlier_mues(store: Store, settings: Settings, rows: list[dict[str, str]]) -> list[Any]:
    """The MUE rows in force before the imported file's effective date (the stored table's, or
    the shipped file's): CMS publishes each quarter's values alone, and a visit of an earlier
    date is decided with the values of its date."""
    since = min((r["effective"] for r in rows), default="")
    current = store.config_current(NCCI, "mue")
    if current is not None:
        earlier: list[Any] = list((current.content or {}).get("rows") or ())
    else:
        earlier = [dict(r) for r in csv_rows(settings.sources["ncci_mue"], MUE_COLUMNS)]
    return [r for r in earlier if isinstance(r, dict) and str(r.get("effective", "")) < since]


def import_ncci(
    store: Store,
    settings: Settings,
    table: str,
    text: str,
    filename: str,
    author: str,
    reason: str,
    effective: date | None = None,
) -> tuple[int, int]:
    """A CMS quarterly NCCI file as a new version of `table` (ptp or mue): the rows of the
    catalog's codes, validated whole, stored with who, when and why, audited. Every later
    decision applies them in place of the shipped file. Returns (version, rows kept)."""
    if table not in NCCI_TABLES:
        raise NotFoundError(f"no NCCI table {table!r}: one of {', '.join(NCCI_TABLES)}")
    if not reason.strip():
        raise Invalid("reason: say why the table changes", [("reason", "required")])
    codes = set(settings.catalog.codes)
    try:
        if table == "ptp":
            rows = ptp_rows(text, codes, filename)
        else:
            rows = mue_rows(text, codes, filename, effective)
    except NcciFileError as exc:
        raise Invalid(f"{filename}: {exc}", [("file", str(exc))]) from exc
    columns = PTP_COLUMNS if table == "ptp" else MUE_COLUMNS
    if table == "mue":  # a quarter's MUEs apply from its date: earlier quarters stay for before
        rows = _earlier_mues(store, settings, rows) + rows
    try:
        checked = stored_rows(rows, columns, filename)
        ncci_from_rows(checked, []) if table == "ptp" else ncci_from_rows([], checked)
    except ConfigError as exc:
        raise Invalid(str(exc), [("file", str(exc))]) from exc
    current = store.config_current(NCCI, table)
    before = len((current.content or {}).get("rows") or ()) if current else None
    diff = [{"change": "replaced", "file": filename, "rows_before": before, "rows": len(rows)}]
    version = store.config_save(
        NCCI, table, {"source": filename, "rows": rows}, author, reason, diff
    )
    store.audit(
        author,
        "import",
        "ncci",
        table,
        {"version": version, "reason": reason, "file": filename, "rows": len(rows)},
    )
    return version, len(rows)


def with_mapping_entry(
    content: dict[str, Any], catalog: Catalog, system: str, code: str, target: dict[str, str]
) -> dict[str, Any]:
    """A mapping table (a ConceptMap) with the entry for `system|code` added or replaced by
    `target` ({code, equivalence, comment}), in the group of its source system and of the
    target code's own system (the catalog's; CPT for a code it does not hold)."""
    table = copy.deepcopy(content)
    for group in table.get("group", []):
        for element in group.get("element", []):
            if group.get("source") == system and element.get("code") == code:
                element["target"] = [target]
                return table
    definition = catalog.codes.get(target["code"])
    target_system = definition.system if definition else CPT
    group = next(
        (
            g
            for g in table.get("group", [])
            if g.get("source") == system and g.get("target") == target_system
        ),
        None,
    )
    if group is None:
        group = {"source": system, "target": target_system, "element": []}
        table.setdefault("group", []).append(group)
    group["element"].append({"code": code, "target": [target]})
    return table
