"""The admin API: managed mapping tables and payer rules (versioned, audited), the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, current_app, jsonify, request
from flask_smorest import Blueprint

from plugin.config.edits import (
    fees_content,
    import_fee_schedule,
    import_ncci,
    rollback,
    save_fees,
    save_mapping,
    save_payers,
    save_vocabulary,
    try_coding,
    vocabulary_content,
)
from plugin.config.effective import (
    FEE_TABLE,
    FEES,
    MAPPING,
    NCCI,
    NCCI_TABLES,
    PAYER_TABLE,
    PAYERS,
    VOCABULARY,
    VOCABULARY_TABLE,
)
from plugin.config.tokens import ROLES
from plugin.errors import BadRequest, Invalid, NotFoundError
from plugin.store.config import VersionInfo
from plugin.web.auth import bearer_caller
from plugin.web.params import date_arg

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin/api/v1",
    description="Mapping tables, payer rules, audit log (IT admins)",
)


def _state() -> Any:
    return current_app.extensions["theracharge"]


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _version_json(v: VersionInfo, content: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": v.version,
        "author": v.author,
        "at": v.at.isoformat(),
        "reason": v.reason,
        "diff": v.diff,
        "deleted": v.content is None,
    }
    if content:
        body["content"] = v.content
    return body


def _versions(kind: str, name: str) -> Response:
    """Every version of a managed table: who, when, why, what changed."""
    bearer_caller(*ROLES)
    return jsonify([_version_json(v) for v in _state().store.config_versions(kind, name)])


def _saved(kind: str, name: str, action: Any) -> Response:
    """Run a save (Invalid is 422 naming each field, StaleVersion 409), then pick it up."""
    version = action()
    _state().refresh()
    return jsonify({"kind": kind, "name": name, "version": version})


def _expect() -> int | None:
    value = request.headers.get("If-Match", "").strip().strip('W/"').strip('"')
    if not value:
        return None
    if not value.isdigit():
        raise BadRequest("If-Match: expected the version number being changed")
    return int(value)


# --- mapping tables -------------------------------------------------------------------------


@blp.route("/mappings", methods=["GET"])
@blp.doc(summary="The mapping tables and their current versions")
def list_mappings() -> Response:
    bearer_caller(*ROLES)
    tables = _state().store.config_tables(MAPPING)
    return jsonify(
        [
            {
                "name": t.name,
                "version": t.version,
                "updated": t.updated.isoformat(),
                "author": t.author,
            }
            for t in tables
        ]
    )


@blp.route("/mappings/<name>", methods=["GET"])
@blp.doc(summary="Export a mapping table: its current FHIR R4 ConceptMap")
def get_mapping(name: str) -> Response:
    bearer_caller(*ROLES)
    current = _state().store.config_current(MAPPING, name)
    if current is None:
        raise NotFoundError(f"no mapping table {name!r}")
    response = jsonify(current.content)
    response.headers["ETag"] = f'W/"{current.version}"'
    return response


@blp.route("/mappings/<name>", methods=["PUT"])
@blp.doc(summary="Create or replace (import) a mapping table: {reason, conceptMap}")
def put_mapping(name: str) -> Response:
    author = bearer_caller("admin")
    body = _body()
    return _save_mapping(name, body.get("conceptMap"), author, str(body.get("reason", "")))


@blp.route("/mappings/<name>", methods=["DELETE"])
@blp.doc(summary="Delete a mapping table (a new version; history stays): ?reason=…")
def delete_mapping(name: str) -> Response:
    author = bearer_caller("admin")
    if _state().store.config_current(MAPPING, name) is None:
        raise NotFoundError(f"no mapping table {name!r}")
    return _save_mapping(name, None, author, request.args.get("reason", ""))


def _save_mapping(name: str, content: Any, author: str, reason: str) -> Response:
    """A new version of the table (None deletes it), guarded by If-Match, then picked up."""
    state = _state()
    expect = _expect()
    return _saved(
        MAPPING,
        name,
        lambda: save_mapping(state.store, state.settings, name, content, author, reason, expect),
    )


@blp.route("/mappings/<name>/versions", methods=["GET"])
@blp.doc(summary="Every version: who, when, why, what changed")
def mapping_versions(name: str) -> Response:
    bearer_caller(*ROLES)
    versions = _state().store.config_versions(MAPPING, name)
    if not versions:
        raise NotFoundError(f"no mapping table {name!r}")
    return jsonify([_version_json(v) for v in versions])


@blp.route("/mappings/<name>/versions/<int(max=2147483647):version>", methods=["GET"])
@blp.doc(summary="One version, with its content")
def mapping_version(name: str, version: int) -> Response:
    bearer_caller(*ROLES)
    found = next(
        (v for v in _state().store.config_versions(MAPPING, name) if v.version == version), None
    )
    if found is None:
        raise NotFoundError(f"mapping table {name!r} has no version {version}")
    return jsonify(_version_json(found, content=True))


@blp.route("/mappings/<name>/rollback", methods=["POST"])
@blp.doc(summary="Make an earlier version current again: {version, reason}")
def rollback_mapping(name: str) -> Response:
    return _rollback(MAPPING, name)


def _rollback(kind: str, name: str) -> Response:
    """A new version with an earlier version's content (admin only)."""
    author = bearer_caller("admin")
    body = _body()
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise Invalid("version: a version number", [("version", "required integer")])
    state = _state()
    reason = str(body.get("reason", ""))
    try:
        return _saved(
            kind,
            name,
            lambda: rollback(state.store, state.settings, kind, name, version, author, reason),
        )
    except LookupError as exc:
        raise NotFoundError(str(exc)) from exc


@blp.route("/mappings/try", methods=["POST"])
@blp.doc(summary="Which CPT/HCPCS code a coding (or a whole Procedure) bills under, and why")
def try_mapping() -> Response:
    bearer_caller(*ROLES)
    body = _body()
    if "procedure" in body:
        procedure = body["procedure"]
        if not isinstance(procedure, dict):
            raise Invalid("procedure: expected a Procedure object", [("procedure", "object")])
        concept = procedure.get("code")
        codings = concept.get("coding") if isinstance(concept, dict) else None
    else:
        codings = [body.get("coding")]
    if codings is not None and not isinstance(codings, list):
        raise Invalid("procedure.code.coding: expected a list", [("procedure.code.coding", "list")])
    pairs = [
        (str(c.get("system")), str(c.get("code")))
        for c in codings or ()
        if isinstance(c, dict) and c.get("system") and c.get("code")
    ]
    if not pairs:
        raise Invalid(
            "coding: give {system, code} or a Procedure with code.coding", [("coding", "required")]
        )
    return jsonify(try_coding(_state().settings, pairs))


# --- payer rules ----------------------------------------------------------------------------


@blp.route("/payers", methods=["GET"])
@blp.doc(summary="The payer rule set: default method, payers, identifiers, gap severities")
def get_payers() -> Response:
    bearer_caller(*ROLES)
    current = _state().store.config_current(PAYERS, PAYER_TABLE)
    response = jsonify(current.content if current else {})
    if current:
        response.headers["ETag"] = f'W/"{current.version}"'
    return response


@blp.route("/payers", methods=["PUT"])
@blp.doc(summary="Replace the payer rule set: {reason, payers: {default_method, …}}")
def put_payers() -> Response:
    author = bearer_caller("admin")
    body = _body()
    content = body.get("payers")
    if not isinstance(content, dict):
        raise Invalid("payers: the payer rule set object", [("payers", "required object")])
    state = _state()
    return _saved(
        PAYERS,
        PAYER_TABLE,
        lambda: save_payers(
            state.store, state.settings, content, author, str(body.get("reason", "")), _expect()
        ),
    )


@blp.route("/ncci/<table>", methods=["PUT"])
@blp.doc(
    summary="Import CMS's quarterly NCCI file (body: the file) as a new version of ptp or mue: "
    "?reason=…&filename=…[&effective=YYYY-MM-DD]"
)
def put_ncci(table: str) -> Response:
    author = bearer_caller("admin")
    reason = request.args.get("reason", "")
    filename = request.args.get("filename", "").strip() or f"ncci-{table}"
    effective = date_arg("effective")
    text = request.get_data(as_text=True)
    state = _state()
    version, rows = import_ncci(
        state.store, state.settings, table, text, filename, author, reason, effective
    )
    state.refresh()
    return jsonify({"kind": NCCI, "name": table, "version": version, "rows": rows})


@blp.route("/ncci/<table>/versions", methods=["GET"])
@blp.doc(summary="Every imported version of an NCCI table (ptp or mue): who, when, why, rows")
def ncci_versions(table: str) -> Response:
    if table not in NCCI_TABLES:
        raise NotFoundError(f"no NCCI table {table!r}: one of {', '.join(NCCI_TABLES)}")
    return _versions(NCCI, table)


@blp.route("/payers/versions", methods=["GET"])
@blp.doc(summary="Every version of the payer rules")
def payer_versions() -> Response:
    return _versions(PAYERS, PAYER_TABLE)


@blp.route("/payers/rollback", methods=["POST"])
@blp.doc(summary="Make an earlier version of the payer rules current again: {version, reason}")
def rollback_payers() -> Response:
    return _rollback(PAYERS, PAYER_TABLE)


# --- tables replaced whole: the fee schedule, the documentation vocabulary -------------------


def _whole_table(content: Any) -> Response:
    """The table in force as JSON, with its stored version as the ETag (none: the file)."""
    bearer_caller(*ROLES)
    state = _state()
    body, version = content(state.store, state.settings)
    response = jsonify(body)
    if version is not None:
        response.headers["ETag"] = f'W/"{version}"'
    return response


def _put_whole(kind: str, name: str, field: str, save: Any) -> Response:
    """Replace a whole table from `{reason, <field>: {…}}` (admin only; If-Match honoured)."""
    author = bearer_caller("admin")
    body = _body()
    content = body.get(field)
    if not isinstance(content, dict):
        raise Invalid(f"{field}: the table's object", [(field, "required object")])
    state = _state()
    reason = str(body.get("reason", ""))
    return _saved(kind, name, lambda: save(state.store, content, author, reason, _expect()))


@blp.route("/vocabulary", methods=["GET"])
@blp.doc(
    summary="The documentation vocabulary: codes and their distinctions, neighbour groups, "
    "concepts (terms, SNOMED codes, measure names, weight, source), negation, skill, vague "
    "phrases, measure patterns, review thresholds"
)
def get_vocabulary() -> Response:
    return _whole_table(vocabulary_content)


@blp.route("/vocabulary", methods=["PUT"])
@blp.doc(
    summary="Replace the documentation vocabulary: {reason, vocabulary: {…}} (the shape of "
    'config/rules/activities.yaml), validated whole; If-Match: W/"<version>"'
)
def put_vocabulary() -> Response:
    settings = _state().settings

    def save(store: Any, content: Any, author: str, reason: str, expect: int | None) -> int:
        return save_vocabulary(store, content, author, reason, expect, settings)

    return _put_whole(VOCABULARY, VOCABULARY_TABLE, "vocabulary", save)


@blp.route("/vocabulary/versions", methods=["GET"])
@blp.doc(summary="Every version of the vocabulary: who, when, why, which concepts changed")
def vocabulary_versions() -> Response:
    return _versions(VOCABULARY, VOCABULARY_TABLE)


@blp.route("/vocabulary/rollback", methods=["POST"])
@blp.doc(summary="Make an earlier version of the vocabulary current again: {version, reason}")
def rollback_vocabulary() -> Response:
    return _rollback(VOCABULARY, VOCABULARY_TABLE)


# --- fee schedule ---------------------------------------------------------------------------


@blp.route("/fees", methods=["GET"])
@blp.doc(summary="The fee schedule: currency and dated schedules of allowed amounts per code")
def get_fees() -> Response:
    return _whole_table(fees_content)


@blp.route("/fees", methods=["PUT"])
@blp.doc(
    summary="Replace the fee schedule: {reason, fees: {currency, schedules: [{effective, "
    "source, amounts: {code: amount}}]}}"
)
def put_fees() -> Response:
    return _put_whole(FEES, FEE_TABLE, "fees", save_fees)


@blp.route("/fees/import", methods=["PUT"])
@blp.doc(
    summary="Add a CSV of allowed amounts (body: the file; code and amount columns) as the "
    "schedule in force from ?effective=YYYY-MM-DD&reason=…[&source=…&filename=…]"
)
def import_fees() -> Response:
    author = bearer_caller("admin")
    effective = date_arg("effective")
    if effective is None:
        raise BadRequest("effective: the date the amounts apply from", [("effective", "required")])
    state = _state()
    filename = request.args.get("filename", "").strip() or "fee-schedule.csv"
    version, codes = import_fee_schedule(
        state.store,
        state.settings,
        request.get_data(as_text=True),
        filename,
        effective,
        request.args.get("source", ""),
        author,
        request.args.get("reason", ""),
    )
    state.refresh()
    return jsonify({"kind": FEES, "name": FEE_TABLE, "version": version, "codes": codes})


@blp.route("/fees/versions", methods=["GET"])
@blp.doc(summary="Every version of the fee schedule: who, when, why, what changed")
def fee_versions() -> Response:
    return _versions(FEES, FEE_TABLE)


@blp.route("/fees/rollback", methods=["POST"])
@blp.doc(summary="Make an earlier version of the fee schedule current again: {version, reason}")
def rollback_fees() -> Response:
    return _rollback(FEES, FEE_TABLE)


# --- audit log ------------------------------------------------------------------------------


@blp.route("/audit", methods=["GET"])
@blp.doc(summary="The audit log, newest first: ?actor=&object_type=&object_id=&since=&until=")
def audit() -> Response:
    bearer_caller(*ROLES)
    filters = {
        k: request.args[k] for k in ("actor", "object_type", "object_id") if request.args.get(k)
    }
    since, until = _when("since"), _when("until")
    entries = _state().store.audit_entries(limit=500, **filters)
    return jsonify(
        [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "detail": e.detail,
            }
            for e in entries
            if (since is None or e.at >= since) and (until is None or e.at <= until)
        ]
    )


def _when(name: str) -> datetime | None:
    value = request.args.get(name)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadRequest(f"{name}: expected an ISO date-time", [(name, value)]) from exc
    return parsed if parsed.tzinfo else parsed.astimezone()
