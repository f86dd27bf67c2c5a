"""Documentation gaps against the table-driven cases in tests/cases/gaps.yaml."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from marshmallow import Schema, fields, validate

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline import stages
from plugin.pipeline.stages import translate_tables
from plugin.rules.decision import Decision
from plugin.rules.visit import Severity
from tests import builders
from tests.case_schema import case_date, load_cases

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"


class PeriodSchema(Schema):
    role = fields.String(required=True)
    start = fields.String(required=True, data_key="from")
    end = fields.String(required=True, data_key="to")


class GapProcedureSchema(Schema):
    id = fields.String(required=True)
    code = fields.String(required=True)
    start = fields.String(load_default="09:00")
    minutes = fields.Integer(load_default=20, allow_none=True, strict=True)
    role = fields.String(load_default="225100000X")
    drop = fields.List(
        fields.String(
            validate=validate.OneOf(["note", "bodySite", "reasonReference", "performer"])
        ),
        load_default=list,
    )
    status = fields.String(load_default="completed")
    group = fields.Boolean(load_default=False)
    measure = fields.Boolean(load_default=True)
    # the note as written (default: a full note for the code, plugin.sample.notes)
    note = fields.String(load_default=None)
    # the linked Observation's value: a quantity (degrees) or a yes/no ("tolerated")
    measure_value = fields.String(
        load_default="quantity", validate=validate.OneOf(["quantity", "boolean"])
    )
    measure_name = fields.String(load_default=None)
    based_on = fields.List(fields.String(), load_default=list)  # Procedure.basedOn references


class GapExpectSchema(Schema):
    gaps = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True)
    visit_gaps = fields.List(fields.String())
    status = fields.Dict(
        keys=fields.String(),
        values=fields.String(validate=validate.OneOf(["billable", "planned", "not-billable"])),
        required=True,
    )
    severity = fields.Dict(keys=fields.String(), values=fields.String())
    # finding code → the code it suggests (code-choice-review)
    suggested = fields.Dict(keys=fields.String(), values=fields.String())


class GapCaseSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=10))
    date = case_date()  # the date of service, whose rules decide it
    procedures = fields.List(fields.Nested(GapProcedureSchema), required=True)
    diagnosis = fields.Boolean(load_default=True)
    goal = fields.Boolean(load_default=True)
    goal_addresses = fields.String(load_default="Condition/c1")  # what the goal addresses
    care_plan = fields.Boolean(load_default=True)  # the active plan of care, with the goal
    payer = fields.String(load_default="MEDICARE-B")
    total_timed = fields.Integer(load_default=None, strict=True)
    hours = fields.Integer(load_default=4, strict=True)
    expect = fields.Nested(GapExpectSchema, required=True)


CASES = load_cases("gaps.yaml", GapCaseSchema())
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ROLE_CODES = {"aide": ("https://theracharge.example/fhir/CodeSystem/therapy-role", "aide")}


def _procedure(spec: dict[str, Any], day: date) -> dict[str, Any]:
    role = None if spec["role"] == "none" else spec["role"]
    resource = builders.procedure(
        spec["id"],
        spec["code"],
        f"{day.isoformat()}T{spec['start']}:00-05:00",
        spec["minutes"],
        role=None if role in ROLE_CODES else role,
        status=spec["status"],
        system=HCPCS if spec["code"].startswith("G") else builders.CPT,
    )
    if role in ROLE_CODES:
        system, code = ROLE_CODES[role]
        resource["performer"][0]["function"] = {"coding": [{"system": system, "code": code}]}
    for name in spec["drop"]:
        del resource[name]
    if spec["group"]:
        resource["subject"] = {"reference": "Group/tuesday-class"}
    if spec["note"] is not None:
        resource["note"] = [{"text": spec["note"]}]
    if spec["based_on"]:
        resource["basedOn"] = [{"reference": r} for r in spec["based_on"]]
    return resource


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    resource = builders.observation(f"obs-{spec['id']}", spec["id"])
    if spec["measure_value"] == "boolean":
        del resource["valueQuantity"]
        resource["code"] = {"text": "Tolerated treatment"}
        resource["valueBoolean"] = True
    if spec["measure_name"]:
        resource["code"] = {"text": spec["measure_name"]}
    return resource


def decide(case: dict[str, Any], settings: Settings) -> Decision:
    day = case["date"]
    encounter = builders.encounter(start=f"{day.isoformat()}T08:00:00-05:00", hours=case["hours"])
    if not case["diagnosis"]:
        del encounter["diagnosis"]
    if case["total_timed"] is not None:
        encounter["extension"] = [
            {
                "url": settings.total_timed_extension,
                "valueQuantity": {"value": case["total_timed"], "code": "min"},
            }
        ]
    resources: list[dict[str, Any]] = [
        encounter,
        builders.condition(),
        builders.coverage(payer_value=case["payer"]),
    ]
    if case["care_plan"]:
        resources.append(builders.care_plan())
    if case["goal"]:
        goal = builders.goal()
        goal["addresses"] = [{"reference": case["goal_addresses"]}]
        resources.append(goal)
    for spec in case["procedures"]:
        resources.append(_procedure(spec, day))
        if spec["measure"]:
            resources.append(_measure(spec))
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    (visit,) = list(assembler.visits())
    return stages.decide(settings, (visit,))  # the production path, as the claim cases


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], settings: Settings) -> None:
    decision = decide(case, settings)
    expect = case["expect"]
    gaps = {
        s.reference.split("/", 1)[1]: sorted(
            f.code for f in s.findings if f.severity is not Severity.INFO
        )
        for s in decision.visit.services
    }
    assert {k: v for k, v in gaps.items() if v} == {
        k: sorted(v) for k, v in expect["gaps"].items()
    }, case["name"]
    if "visit_gaps" in expect:
        visit_gaps = sorted(
            f.code for f in decision.visit.findings if f.severity is not Severity.INFO
        )
        assert visit_gaps == sorted(expect["visit_gaps"]), case["name"]
    statuses = {line.code: line.status.value for line in decision.lines}
    assert statuses == expect["status"], case["name"]
    by_code = {f.code: f for f in decision.findings}
    for code, severity in expect.get("severity", {}).items():
        assert by_code[code].severity.value == severity, case["name"]
    for code, suggested in expect.get("suggested", {}).items():
        assert by_code[code].suggested_code == suggested, case["name"]
    for item in decision.findings:  # every gap says where it is, how to fix it, and why
        assert item.resource, item
        assert item.fix, item
        assert item.source, item
    for line in decision.lines:
        if line.status.value == "planned":
            assert line.holds, line.code
            assert "Held for documentation" in line.note
