"""The admin API: the managed tables (versioned, audited) and the audit log.

The tables replaced whole get their four routes from the registry (plugin/config/tables.py):
GET and PUT /{path}, GET /{path}/versions, POST /{path}/rollback. The mapping tables (named, one
file each) and the NCCI files (imported from CMS) have routes of their own shape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Response, g, jsonify, request

from plugin.config.edits import (
    import_fee_schedule,
    import_ncci,
    rollback,
    save_mapping,
    save_table,
    table_content,
    try_coding,
)
from plugin.config.effective import MAPPING, NCCI, NCCI_TABLES
from plugin.config.tables import FEES, TABLES, Table
from plugin.config.tokens import ROLES
from plugin.errors import BadRequest, NotFoundError
from plugin.schemas import api
from plugin.schemas.conceptmap import ConceptMapSchema
from plugin.store.config import VersionInfo
from plugin.web import examples
from plugin.web.api_docs import TOKEN, Blueprint, raw_body
from plugin.web.auth import requires
from plugin.web.state import app_state

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/admin/api/v1",
    description="Mapping tables, payer rules, fees, vocabulary, NCCI files, audit log (IT admins)",
)
ADMIN = ("admin",)


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


def _versions(kind: str, name: str, named: bool = False) -> Response:
    """Every version of a managed table: who, when, why, what changed. None yet: [] (the
    shipped file is in force), or 404 for a table that exists only by its name (`named`)."""
    versions = app_state().store.config_versions(kind, name)
    if not versions and named:
        raise NotFoundError(f"no {kind} table {name!r}")
    return jsonify([_version_json(v) for v in versions])


def _saved(kind: str, name: str, action: Callable[[], int]) -> Response:
    """Run a save (Invalid is 422 naming each field, StaleVersion 409), then pick it up."""
    version = action()
    app_state().refresh()
    return jsonify({"kind": kind, "name": name, "version": version})


def _expect() -> int | None:
    value = request.headers.get("If-Match", "").strip().strip('W/"').strip('"')
    if not value:
        return None
    if not value.isdigit():
        raise BadRequest("If-Match: expected the version number being changed")
    return int(value)


def _rollback(kind: str, name: str, body: dict[str, Any]) -> Response:
    """A new version with an earlier version's content (admin only)."""
    state = app_state()
    version, reason, author = body["version"], body["reason"], g.caller
    try:
        return _saved(
            kind,
            name,
            lambda: rollback(state.store, state.settings, kind, name, version, author, reason),
        )
    except LookupError as exc:
        raise NotFoundError(str(exc)) from exc


# --- the tables replaced whole: four routes each, from the registry -------------------------


def _table_routes(table: Table) -> None:
    body = api.Body.from_dict(
        {
            "reason": api.reason_field(f"{table.title} change"),
            table.field: api.TableContent(table.schema, required=True, error_messages=api.REQUIRED),
        },
        name=f"{table.path.title()}Put",
    )
    saved = {**examples.SAVED, "kind": table.kind, "name": table.name}

    @blp.route(f"/{table.path}", methods=["GET"], endpoint=f"get_{table.path}")
    @blp.doc(summary=f"{table.summary}; ETag: its stored version")
    @blp.access(TOKEN, 401, 403)
    @blp.response(200, table.schema, example=table.example, description="The table in force")
    @requires(*ROLES)
    def get_table() -> Response:
        state = app_state()
        content, version = table_content(state.store, state.settings, table)
        response = jsonify(content)
        if version is not None:
            response.headers["ETag"] = f'W/"{version}"'
        return response

    @blp.route(f"/{table.path}", methods=["PUT"], endpoint=f"put_{table.path}")
    @blp.doc(
        summary=f"Replace {table.title}: {{reason, {table.field}}}, validated whole; "
        'If-Match: W/"<version>" refuses a change made meanwhile'
    )
    @blp.access(TOKEN, 400, 401, 403, 409, 422)
    @blp.response(200, api.Saved, example=saved, description="Stored as a new version")
    @requires(*ADMIN)
    @blp.arguments(body, example={"reason": "our contract changed", table.field: table.example})
    def put_table(sent: dict[str, Any]) -> Response:
        state, author = app_state(), g.caller
        return _saved(
            table.kind,
            table.name,
            lambda: save_table(
                state.store,
                state.settings,
                table,
                sent[table.field],
                author,
                sent["reason"],
                _expect(),
            ),
        )

    @blp.route(f"/{table.path}/versions", methods=["GET"], endpoint=f"{table.path}_versions")
    @blp.doc(summary=f"Every version of {table.title}: who, when, why, what changed")
    @blp.access(TOKEN, 401, 403, 404)
    @blp.response(200, api.Version(many=True), example=examples.VERSIONS)
    @requires(*ROLES)
    def table_versions() -> Response:
        return _versions(table.kind, table.name)

    @blp.route(f"/{table.path}/rollback", methods=["POST"], endpoint=f"rollback_{table.path}")
    @blp.doc(summary=f"Make an earlier version of {table.title} current again: {{version, reason}}")
    @blp.access(TOKEN, 400, 401, 403, 404, 422)
    @blp.response(200, api.Saved, example=saved, description="Stored as a new version")
    @requires(*ADMIN)
    @blp.arguments(api.Rollback, example=examples.ROLLBACK)
    def rollback_table(sent: dict[str, Any]) -> Response:
        return _rollback(table.kind, table.name, sent)


for _table in TABLES:
    _table_routes(_table)


# --- mapping tables -------------------------------------------------------------------------


@blp.route("/mappings", methods=["GET"])
@blp.doc(summary="The mapping tables and their current versions")
@blp.access(TOKEN, 401, 403)
@blp.response(200, api.MappingTable(many=True), example=examples.MAPPINGS)
@requires(*ROLES)
def list_mappings() -> Response:
    return jsonify(
        [
            {
                "name": t.name,
                "version": t.version,
                "updated": t.updated.isoformat(),
                "author": t.author,
            }
            for t in app_state().store.config_tables(MAPPING)
        ]
    )


@blp.route("/mappings/<name>", methods=["GET"])
@blp.doc(summary="Export a mapping table: its current FHIR R4 ConceptMap; ETag: its version")
@blp.access(TOKEN, 401, 403, 404)
@blp.response(200, ConceptMapSchema, example=examples.CONCEPT_MAP)
@requires(*ROLES)
def get_mapping(name: str) -> Response:
    current = app_state().store.config_current(MAPPING, name)
    if current is None:
        raise NotFoundError(f"no mapping table {name!r}")
    response = jsonify(current.content)
    response.headers["ETag"] = f'W/"{current.version}"'
    return response


@blp.route("/mappings/<name>", methods=["PUT"])
@blp.doc(summary="Create or replace (import) a mapping table: {reason, conceptMap}")
@blp.access(TOKEN, 400, 401, 403, 409, 422)
@blp.response(200, api.Saved, example={"kind": MAPPING, "name": "local.json", "version": 2})
@requires(*ADMIN)
@blp.arguments(api.MappingPut, example=examples.MAPPING_PUT)
def put_mapping(sent: dict[str, Any], name: str) -> Response:
    return _save_mapping(name, sent["conceptMap"], sent["reason"])


@blp.route("/mappings/<name>", methods=["DELETE"])
@blp.doc(summary="Delete a mapping table (a new version; history stays): ?reason=…")
@blp.access(TOKEN, 400, 401, 403, 404, 409, 422)
@blp.response(200, api.Saved, example={"kind": MAPPING, "name": "local.json", "version": 3})
@requires(*ADMIN)
@blp.arguments(api.DeleteQuery, location="query", error_status_code=400)
def delete_mapping(query: dict[str, Any], name: str) -> Response:
    if app_state().store.config_current(MAPPING, name) is None:
        raise NotFoundError(f"no mapping table {name!r}")
    return _save_mapping(name, None, query["reason"])


def _save_mapping(name: str, content: Any, reason: str) -> Response:
    """A new version of the table (None deletes it), guarded by If-Match, then picked up."""
    state, author, expect = app_state(), g.caller, _expect()
    return _saved(
        MAPPING,
        name,
        lambda: save_mapping(state.store, state.settings, name, content, author, reason, expect),
    )


@blp.route("/mappings/<name>/versions", methods=["GET"])
@blp.doc(summary="Every version: who, when, why, what changed")
@blp.access(TOKEN, 401, 403, 404)
@blp.response(200, api.Version(many=True), example=examples.VERSIONS)
@requires(*ROLES)
def mapping_versions(name: str) -> Response:
    return _versions(MAPPING, name, named=True)


@blp.route("/mappings/<name>/versions/<int(max=2147483647):version>", methods=["GET"])
@blp.doc(summary="One version, with its content")
@blp.access(TOKEN, 401, 403, 404)
@blp.response(200, api.Version, example=examples.MAPPING_VERSION)
@requires(*ROLES)
def mapping_version(name: str, version: int) -> Response:
    found = next(
        (v for v in app_state().store.config_versions(MAPPING, name) if v.version == version), None
    )
    if found is None:
        raise NotFoundError(f"mapping table {name!r} has no version {version}")
    return jsonify(_version_json(found, content=True))


@blp.route("/mappings/<name>/rollback", methods=["POST"])
@blp.doc(summary="Make an earlier version current again: {version, reason}")
@blp.access(TOKEN, 400, 401, 403, 404, 422)
@blp.response(200, api.Saved, example={"kind": MAPPING, "name": "local.json", "version": 4})
@requires(*ADMIN)
@blp.arguments(api.Rollback, example=examples.ROLLBACK)
def rollback_mapping(sent: dict[str, Any], name: str) -> Response:
    return _rollback(MAPPING, name, sent)


@blp.route("/mappings/try", methods=["POST"])
@blp.doc(summary="Which CPT/HCPCS code a coding (or a whole Procedure) bills under, and why")
@blp.access(TOKEN, 400, 401, 403, 422)
@blp.response(200, api.TryResult, example=examples.TRIED)
@requires(*ROLES)
@blp.arguments(api.TryMapping, example=examples.TRY)
def try_mapping(sent: dict[str, Any]) -> Response:
    codings = [sent["coding"]] if "coding" in sent else sent["procedure"]["code"]["coding"]
    pairs = [(c["system"], c["code"]) for c in codings]
    return jsonify(try_coding(app_state().settings, pairs))


# --- files imported as new versions: NCCI, a fee schedule's CSV ------------------------------


@blp.route("/ncci/<table>", methods=["PUT"])
@blp.doc(
    summary="Import CMS's quarterly NCCI file (body: the file) as a new version of ptp or mue: "
    "?reason=…&filename=…[&effective=YYYY-MM-DD]",
    **raw_body("CMS's quarterly practitioner file(s) as text", "text/plain", examples.NCCI_FILE),
)
@blp.access(TOKEN, 400, 401, 403, 404, 422)
@blp.response(200, api.Saved, example={"kind": NCCI, "name": "ptp", "version": 2, "rows": 1})
@requires(*ADMIN)
@blp.arguments(api.NcciImportQuery, location="query", error_status_code=400)
def put_ncci(query: dict[str, Any], table: str) -> Response:
    filename = (query.get("filename") or "").strip() or f"ncci-{table}"
    state = app_state()
    version, rows = import_ncci(
        state.store,
        state.settings,
        table,
        request.get_data(as_text=True),
        filename,
        g.caller,
        query["reason"],
        query.get("effective"),
    )
    state.refresh()
    return jsonify({"kind": NCCI, "name": table, "version": version, "rows": rows})


@blp.route("/ncci/<table>/versions", methods=["GET"])
@blp.doc(summary="Every imported version of an NCCI table (ptp or mue): who, when, why, rows")
@blp.access(TOKEN, 401, 403, 404)
@blp.response(200, api.Version(many=True), example=examples.VERSIONS)
@requires(*ROLES)
def ncci_versions(table: str) -> Response:
    if table not in NCCI_TABLES:
        raise NotFoundError(f"no NCCI table {table!r}: one of {', '.join(NCCI_TABLES)}")
    return _versions(NCCI, table)


@blp.route("/fees/import", methods=["PUT"])
@blp.doc(
    summary="Add a CSV of allowed amounts (body: the file; code and amount columns) as the "
    "schedule in force from ?effective=YYYY-MM-DD&reason=…[&source=…&filename=…]",
    **raw_body("A CSV with a code and an amount column", "text/csv", examples.FEE_CSV),
)
@blp.access(TOKEN, 400, 401, 403, 422)
@blp.response(200, api.Saved, example={"kind": "fees", "name": "fee-schedule", "version": 2})
@requires(*ADMIN)
@blp.arguments(api.FeeImportQuery, location="query", error_status_code=400)
def import_fees(query: dict[str, Any]) -> Response:
    state = app_state()
    filename = (query.get("filename") or "").strip() or "fee-schedule.csv"
    version, codes = import_fee_schedule(
        state.store,
        state.settings,
        request.get_data(as_text=True),
        filename,
        query["effective"],
        query.get("source", ""),
        g.caller,
        query["reason"],
    )
    state.refresh()
    return jsonify({"kind": FEES.kind, "name": FEES.name, "version": version, "codes": codes})


# --- audit log ------------------------------------------------------------------------------


@blp.route("/audit", methods=["GET"])
@blp.doc(summary="The audit log, newest first: ?actor=&object_type=&object_id=&since=&until=")
@blp.access(TOKEN, 400, 401, 403)
@blp.response(200, api.AuditEntry(many=True), example=examples.AUDIT)
@requires(*ROLES)
@blp.arguments(api.AuditQuery, location="query", error_status_code=400)
def audit(query: dict[str, Any]) -> Response:
    filters = {k: query[k] for k in ("actor", "object_type", "object_id") if query.get(k)}
    since, until = (_aware(query.get(k)) for k in ("since", "until"))
    entries = app_state().store.audit_entries(limit=500, since=since, until=until, **filters)
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
        ]
    )


def _aware(value: datetime | None) -> datetime | None:
    """A date-time without an offset is taken as this machine's local time (its offset now)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=datetime.now().astimezone().tzinfo)
