"""The finding registry schema: validates config/rules/findings.yaml into a FindingPolicy."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, post_load, validate

from plugin.rules.findings import FindingPolicy, FindingType
from plugin.rules.visit import Severity


class FindingTypeSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=60))
    fixed_by = fields.String(required=True, validate=validate.Length(min=1))
    severity = fields.Enum(Severity, by_value=True, required=True)
    fix = fields.String(required=True, validate=validate.Length(min=1))
    source = fields.String(required=True, validate=validate.Length(min=1))


class GapParametersSchema(Schema):
    max_service_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    review_minutes_per_unit = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1)
    )


class FindingRegistrySchema(Schema):
    parameters = fields.Nested(GapParametersSchema, required=True)
    findings = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^[a-z0-9]+(-[a-z0-9]+)*$")),
        values=fields.Nested(FindingTypeSchema),
        required=True,
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> FindingPolicy:
        types = {
            code: FindingType(
                code,
                entry["severity"],
                entry["fix"],
                entry["source"],
                entry["title"],
                entry["fixed_by"],
            )
            for code, entry in data["findings"].items()
        }
        return FindingPolicy(types=types, **data["parameters"])
