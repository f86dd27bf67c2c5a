"""The schema of the YAML rule cases: a typo in a key fails instead of passing silently."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import yaml
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

CASES_DIR = Path(__file__).parent / "cases"


class CaseServiceSchema(Schema):
    code = fields.String(required=True)
    minutes = fields.Integer(load_default=None, strict=True)
    discipline = fields.String(load_default=None, validate=validate.OneOf(["PT", "OT", "SLP"]))
    date = fields.String(load_default=None)
    patient = fields.String(load_default=None)
    provider = fields.String(load_default=None)


class ExpectedLineSchema(Schema):
    code = fields.String(required=True)
    units = fields.Integer(required=True, strict=True)
    discipline = fields.String(load_default=None)
    date = fields.String(load_default=None)
    minutes = fields.Integer(load_default=None, strict=True)
    derived_from = fields.String(load_default=None)


class ExpectSchema(Schema):
    units = fields.Dict(keys=fields.String(), values=fields.Integer(strict=True))
    lines = fields.List(fields.Nested(ExpectedLineSchema))
    total_timed_minutes = fields.Integer(strict=True)
    total_treatment_minutes = fields.Integer(strict=True)
    total_timed_units = fields.Integer(strict=True)
    alternatives = fields.List(fields.Dict(keys=fields.String(), values=fields.Integer()))
    explanation_mentions = fields.List(fields.String())

    @validates_schema
    def _units_or_lines(self, data: dict[str, Any], **_: Any) -> None:
        if ("units" in data) == ("lines" in data):
            raise ValidationError("give exactly one of units (one group) or lines")


# Every case is decided under the rules in force on its date of service (as OpenFisca's cases
# carry a period), never on the day the tests run: a dated table that changes later cannot
# change a case's outcome. Without its own, a case's date is the file's sample day.
def case_date() -> fields.Date:
    return fields.Date(load_default=lambda: date(2026, 11, 2))


class UnitCaseSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=10))
    date = case_date()
    method = fields.String(load_default="cms", validate=validate.OneOf(["cms", "ama"]))
    tie_break = fields.List(fields.String(), load_default=None)
    services = fields.List(fields.Nested(CaseServiceSchema), required=True)
    expect = fields.Nested(ExpectSchema, required=True)


def load_cases(filename: str, schema: Schema) -> list[dict[str, Any]]:
    raw = yaml.safe_load((CASES_DIR / filename).read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = schema.load(raw["cases"], many=True)
    names = [c["name"] for c in cases]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{filename}: duplicate case names {sorted(duplicates)}")
    return cases
