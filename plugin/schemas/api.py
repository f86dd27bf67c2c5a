"""The HTTP API's bodies and query strings, as marshmallow schemas: the schema a view validates a
request with is the one /openapi.json documents (flask-smorest's `@blp.arguments`), and each
response is documented by its schema (`@blp.response`). The managed tables' own schemas
(ConceptMap, payers, fees, vocabulary) document their content; their saves validate it whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from marshmallow import (
    EXCLUDE,
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates_schema,
)

from plugin.schemas.conceptmap import ConceptMapSchema

REQUIRED: dict[str, str | list[Any] | dict[Any, Any]] = {
    "required": "required"
}  # the message a missing field gets: `fields.reason: required`


class Body(Schema):
    """A request body: fields it does not know are ignored (clients may send more)."""

    class Meta:
        unknown = EXCLUDE


class Answer(Schema):
    """A response body: documents what the view returns (which may carry more)."""

    class Meta:
        unknown = INCLUDE


class TableContent(fields.Nested):
    """A managed table's content in a request: documented as the table's own schema, and
    validated whole by the save, which knows the code catalog and names every field at fault
    under the body's field (`conceptMap.group[0]…`): here only an object."""

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        partial: bool | Sequence[str] | AbstractSet[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if not isinstance(value, dict):
            raise ValidationError("expected an object")
        return value


def reason_field(what: str) -> fields.String:
    return fields.String(
        required=True,
        error_messages=REQUIRED,
        metadata={"description": f"why {what}: kept in the table's history and the audit log"},
    )


# --- managed tables: requests (a table replaced whole gets its own from its registry entry,
# plugin/web/admin.py) ------------------------------------------------------------------


class MappingPut(Body):
    reason = reason_field("the table changes")
    conceptMap = TableContent(ConceptMapSchema, required=True, error_messages=REQUIRED)


class Rollback(Body):
    version = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1),
        error_messages=REQUIRED,
        metadata={"description": "the version whose content becomes current again"},
    )
    reason = reason_field("the earlier version comes back")


class Coding(Body):
    system = fields.String(required=True, validate=validate.Length(min=1))
    code = fields.String(required=True, validate=validate.Length(min=1))


class CodeableConcept(Body):
    coding = fields.List(fields.Nested(Coding), required=True)


class ProcedureCode(Body):
    """The part of a FHIR Procedure the mapping reads: its code."""

    resourceType = fields.String(validate=validate.Equal("Procedure"))
    code = fields.Nested(CodeableConcept, required=True)


class TryMapping(Body):
    """A coding, or a whole Procedure (its code.coding, each tried in turn)."""

    coding = fields.Nested(Coding)
    procedure = fields.Nested(ProcedureCode)

    @validates_schema
    def _one(self, data: dict[str, Any], **_: Any) -> None:
        if ("coding" in data) == ("procedure" in data):
            raise ValidationError("give a coding or a procedure (one of them)", "coding")


class DeleteQuery(Schema):
    reason = reason_field("the table is deleted")


class NcciImportQuery(Schema):
    reason = reason_field("the NCCI table changes")
    filename = fields.String(metadata={"description": "the file's name, kept with the version"})
    effective = fields.Date(
        metadata={"description": "the date the edits apply from (default: the file's own)"}
    )


class FeeImportQuery(Schema):
    effective = fields.Date(
        required=True,
        error_messages=REQUIRED,
        metadata={"description": "the date the amounts apply from"},
    )
    reason = reason_field("the fee schedule changes")
    source = fields.String(metadata={"description": "where the amounts come from"})
    filename = fields.String(metadata={"description": "the file's name, kept with the version"})


class AuditQuery(Schema):
    actor = fields.String()
    object_type = fields.String()
    object_id = fields.String()
    since = fields.DateTime(metadata={"description": "ISO date-time (local time if no offset)"})
    until = fields.DateTime(metadata={"description": "ISO date-time (local time if no offset)"})


class NotificationsQuery(Schema):
    status = fields.String(
        load_default="failed",
        validate=validate.OneOf(["pending", "processing", "done", "failed"]),
    )


class OutletMessagesQuery(Schema):
    day = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=300),
        metadata={"description": "the billing day's line-key prefix, e.g. Patient/p1/2026-11-02"},
    )


class ChargesQuery(Schema):
    dry_run = fields.Boolean(
        load_default=False,
        truthy={"true"},
        falsy={"false"},
        error_messages={"invalid": "expected true or false"},
        metadata={"description": "true: decide and plan, write nothing (any role)"},
    )


# --- managed tables: answers -------------------------------------------------------------------


class Saved(Answer):
    kind = fields.String(required=True)
    name = fields.String(required=True)
    version = fields.Integer(required=True)
    rows = fields.Integer(metadata={"description": "rows imported (an NCCI file)"})
    codes = fields.Integer(metadata={"description": "codes priced (a fee schedule)"})


class Version(Answer):
    version = fields.Integer(required=True)
    author = fields.String(required=True)
    at = fields.DateTime(required=True)
    reason = fields.String(required=True)
    diff = fields.List(fields.Raw(), required=True)
    deleted = fields.Boolean(required=True)
    content = fields.Raw(metadata={"description": "the version's content (one version only)"})


class MappingTable(Answer):
    name = fields.String(required=True)
    version = fields.Integer(required=True)
    updated = fields.DateTime(required=True)
    author = fields.String(required=True)


class TryResult(Answer):
    code = fields.String(allow_none=True, required=True)
    how = fields.String(required=True)
    detail = fields.String(allow_none=True)
    mapping = fields.Dict()


# --- the charges API, CDS Hooks, notifications, health -----------------------------------------


class Line(Answer):
    key = fields.String(required=True)
    code = fields.String(required=True)
    units = fields.Integer(required=True)
    minutes = fields.Integer()
    modifiers = fields.List(fields.String(), required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["billable", "not-billable", "planned"])
    )
    holds = fields.List(fields.String())
    warnings = fields.List(fields.String())


class DayReport(Answer):
    encounter = fields.String(required=True)
    day = fields.String()
    encounters = fields.List(fields.String())
    lines = fields.List(fields.Nested(Line), required=True)
    problems = fields.List(fields.Dict(), required=True)
    written = fields.Dict(metadata={"description": "sent; created, updated, unchanged …"})
    configuration = fields.Dict(keys=fields.String(), values=fields.String())
    dry_run = fields.Boolean()


class Card(Answer):
    uuid = fields.String()
    summary = fields.String(required=True, validate=validate.Length(max=140))
    indicator = fields.String(
        required=True, validate=validate.OneOf(["info", "warning", "critical"])
    )
    detail = fields.String()
    source = fields.Dict(required=True)
    links = fields.List(fields.Dict())
    overrideReasons = fields.List(fields.Dict())


class Cards(Answer):
    cards = fields.List(fields.Nested(Card), required=True)
    systemActions = fields.List(fields.Dict())


class Service(Answer):
    hook = fields.String(required=True)
    id = fields.String(required=True)
    title = fields.String()
    description = fields.String(required=True)
    prefetch = fields.Dict(keys=fields.String(), values=fields.String())


class Discovery(Answer):
    services = fields.List(fields.Nested(Service), required=True)


class Recorded(Answer):
    """A feedback call's answer: an empty object."""


class Queued(Answer):
    queued = fields.Boolean(required=True)
    reason = fields.String(metadata={"description": "why not, when not queued"})


class QueuedCount(Answer):
    queued = fields.Integer(required=True)


class Health(Answer):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


# --- background work, audit ---------------------------------------------------------------------


class Notification(Answer):
    id = fields.Integer(required=True)
    encounter = fields.String(required=True)
    version = fields.String(allow_none=True)
    status = fields.String(required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True)
    claimed_by = fields.String(allow_none=True)
    received_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    next_attempt_at = fields.DateTime(allow_none=True)


class OutletMessageLine(Answer):
    key = fields.String(required=True)
    credit = fields.Boolean(required=True)


class OutletMessage(Answer):
    control_id = fields.String(required=True)
    day = fields.String(required=True)
    state = fields.String(required=True)  # pending, accepted, refused
    attempts = fields.Integer(required=True)
    answer = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(OutletMessageLine), required=True)
    created_at = fields.DateTime()


class Requeued(Answer):
    kind = fields.String(required=True)
    id = fields.Integer(required=True)
    status = fields.String(required=True)


class DeadLetter(Answer):
    kind = fields.String(required=True)
    id = fields.Integer(required=True)
    key = fields.String(required=True)
    reason = fields.String(required=True)
    attempts = fields.Integer(required=True)
    first_seen = fields.DateTime(allow_none=True)
    last_tried = fields.DateTime(allow_none=True)


class ReasonCount(Answer):
    reason = fields.String(required=True)
    count = fields.Integer(required=True)


class DeadLetters(Answer):
    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    reasons = fields.List(fields.Nested(ReasonCount), required=True)
    items = fields.List(fields.Nested(DeadLetter), required=True)


class Backfill(Answer):
    id = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    since = fields.Date(required=True)
    until = fields.Date(required=True)
    dry_run = fields.Boolean(required=True)
    days = fields.Integer(required=True)
    finished = fields.Integer(required=True)
    status = fields.Dict(keys=fields.String(), values=fields.Integer())
    written = fields.Integer()
    unchanged = fields.Integer()
    planned = fields.Integer()
    held = fields.Integer()
    failed = fields.Integer()
    lines = fields.Integer()
    failures = fields.List(fields.Dict())


class AuditEntry(Answer):
    at = fields.DateTime(required=True)
    actor = fields.String(required=True)
    action = fields.String(required=True)
    object_type = fields.String(required=True)
    object_id = fields.String(required=True)
    detail = fields.Dict()
