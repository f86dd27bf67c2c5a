"""Claim-line edits and modifiers against the table-driven cases in tests/cases/claims.yaml."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from marshmallow import Schema, fields, validate

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline.stages import decide, translate_tables
from plugin.rules.decision import Decision
from plugin.rules.visit import Severity
from tests import builders
from tests.case_schema import load_cases

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ROLES = {
    "PT": "225100000X",
    "PTA": "225200000X",
    "OT": "225X00000X",
    "OTA": "224Z00000X",
    "SLP": "235Z00000X",
}
ROLE = validate.OneOf(list(ROLES))
HHMM = validate.Regexp(r"^\d{2}:\d{2}$")


class PerformerSchema(Schema):
    role = fields.String(required=True, validate=ROLE)
    start = fields.String(load_default=None, data_key="from", validate=HHMM)
    end = fields.String(load_default=None, data_key="to", validate=HHMM)


class ProcedureSchema(Schema):
    code = fields.String(required=True)
    start = fields.String(load_default="09:00", validate=HHMM)
    minutes = fields.Integer(load_default=None, strict=True)
    role = fields.String(load_default="PT", validate=ROLE)
    performers = fields.List(fields.Nested(PerformerSchema), load_default=None)


class LineSchema(Schema):
    code = fields.String(required=True)
    units = fields.Integer(required=True, strict=True)
    modifiers = fields.List(fields.String(), required=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["billable", "planned", "not-billable"])
    )


class ExpectSchema(Schema):
    lines = fields.List(fields.Nested(LineSchema), required=True)
    findings = fields.List(fields.String(), load_default=list)
    explanation_mentions = fields.List(fields.String(), load_default=list)


class ClaimCaseSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=10))
    date = fields.String(
        load_default="2026-11-02", validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$")
    )
    payer = fields.String(load_default="MEDICARE-B")
    participants = fields.List(fields.String(validate=ROLE), load_default=list)
    procedures = fields.List(fields.Nested(ProcedureSchema), required=True)
    expect = fields.Nested(ExpectSchema, required=True)


CASES = load_cases("claims.yaml", ClaimCaseSchema())


def _at(day: str, hhmm: str) -> str:
    return f"{day}T{hhmm}:00-05:00"


def _procedure(index: int, spec: dict[str, Any], day: str) -> dict[str, Any]:
    start = _at(day, spec["start"])
    system = HCPCS if spec["code"].startswith("G") else builders.CPT
    resource = builders.procedure(
        f"p{index}", spec["code"], start, spec["minutes"], system=system, role=ROLES[spec["role"]]
    )
    if spec["performers"] is not None:
        resource["performer"] = [
            builders.performer(
                f"Practitioner/{p['role'].lower()}1",
                ROLES[p["role"]],
                (_at(day, p["start"]), _at(day, p["end"])) if p["start"] else None,
            )
            for p in spec["performers"]
        ]
        periods = [p for p in spec["performers"] if p["start"]]
        if periods and spec["minutes"] is None:
            resource["performedPeriod"] = {
                "start": _at(day, min(p["start"] for p in periods)),
                "end": _at(day, max(p["end"] for p in periods)),
            }
    else:
        resource["performer"][0]["actor"]["reference"] = f"Practitioner/{spec['role'].lower()}1"
    return resource


def decide_case(case: dict[str, Any], settings: Settings) -> Decision:
    day = case["date"]
    encounter = builders.encounter(start=_at(day, "08:00"))
    if case["participants"]:
        encounter["participant"] = [
            {
                "type": [{"coding": [{"system": builders.NUCC, "code": ROLES[role]}]}],
                "individual": {"reference": f"Practitioner/{role.lower()}1"},
            }
            for role in case["participants"]
        ]
    resources: list[dict[str, Any]] = [
        encounter,
        builders.condition(),
        builders.coverage(payer_value=case["payer"]),
        builders.goal(),
    ]
    for index, spec in enumerate(case["procedures"], start=1):
        resources.append(_procedure(index, spec, day))
        resources.append(builders.observation(f"obs-p{index}", f"p{index}"))
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    return decide(settings, list(assembler.visits()))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], settings: Settings) -> None:
    decision = decide_case(case, settings)
    expect = case["expect"]
    got = Counter(
        (ln.code, ln.units, tuple(ln.modifiers), ln.status.value) for ln in decision.lines
    )
    wanted = Counter(
        (ln["code"], ln["units"], tuple(ln["modifiers"]), ln["status"]) for ln in expect["lines"]
    )
    assert got == wanted, case["name"]
    gaps = sorted({f.code for f in decision.findings if f.severity is not Severity.INFO})
    assert gaps == sorted(expect["findings"]), case["name"]
    said = " ".join(e.text for e in decision.explanation)
    for words in expect["explanation_mentions"]:
        assert words in said, (case["name"], said)
    assert len({ln.key for ln in decision.lines}) == len(decision.lines)  # one key per line
