"""The unit-rule parameters schema: validates config/rules/units.yaml into UnitParameters."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from plugin.rules.model import TieBreak
from plugin.rules.parameters import (
    DatedParameter,
    DatedValue,
    Reference,
    UnitParameters,
    UnitTable,
)


class ReferenceSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1))
    href = fields.Url(load_default="")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Reference:
        return Reference(**data)


class UnitTableValueSchema(Schema):
    since = fields.Date(required=True)
    unit_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    first_unit_minutes = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    reference = fields.Nested(ReferenceSchema, required=True)
    published_rows = fields.List(
        fields.List(fields.Integer(strict=True), validate=validate.Length(equal=3)),
        load_default=list,
    )

    @validates_schema
    def _first_within_unit(self, data: dict[str, Any], **_: Any) -> None:
        if data["first_unit_minutes"] > data["unit_minutes"]:
            raise ValidationError("must not exceed unit_minutes", "first_unit_minutes")


class UnitTableSchema(Schema):
    description = fields.String(load_default="")
    values = fields.List(
        fields.Nested(UnitTableValueSchema), required=True, validate=validate.Length(min=1)
    )


class UnitRulesSchema(Schema):
    unit_table = fields.Nested(UnitTableSchema, required=True)
    tie_break = fields.List(
        fields.Enum(TieBreak, by_value=True), required=True, validate=validate.Length(min=1)
    )
    max_alternatives = fields.Integer(
        load_default=20, strict=True, validate=validate.Range(min=0, max=1000)
    )

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> UnitParameters:
        dated = [
            DatedValue(
                since=v["since"],
                value=UnitTable(
                    unit_minutes=v["unit_minutes"],
                    first_unit_minutes=v["first_unit_minutes"],
                    published_rows=tuple(tuple(r) for r in v["published_rows"]),
                ),
                reference=v["reference"],
            )
            for v in data["unit_table"]["values"]
        ]
        return UnitParameters(
            unit_table=DatedParameter("unit_table", dated),
            tie_break=tuple(data["tie_break"]),
            max_alternatives=data["max_alternatives"],
        )
