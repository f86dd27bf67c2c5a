"""Claim-line edits and modifiers against the table-driven cases in tests/cases/claims.yaml."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from marshmallow import Schema, fields, pre_load, validate

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
    "physician": "208100000X",  # physical medicine and rehabilitation
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


class PlanSchema(Schema):
    start = fields.String(load_default=None)
    # the certification date; "start": certified on the plan's first day; null: not certified
    certified = fields.String(load_default="start", allow_none=True)
    end = fields.String(load_default=None)
    discipline = fields.String(load_default=None)
    delay_reason = fields.String(load_default=None)  # a delayed certification's reason


class ChargeSchema(Schema):
    date = fields.String(required=True)
    code = fields.String(load_default="97110")
    units = fields.Integer(load_default=1, strict=True)
    amount = fields.Float(load_default=None)
    modifier = fields.String(load_default="GP", validate=validate.OneOf(["GP", "GO", "GN"]))


class ReportSchema(Schema):
    """A progress report: written on `date` by `author` (Practitioner/{role}1, its role on a
    PractitionerRole), signed off by `cosigner` (a DocumentReference's authenticator, or a
    second performer of a Procedure or Observation), linked to the case's plan when `plan`."""

    date = fields.String(required=True)
    author = fields.String(load_default="PT", allow_none=True, validate=ROLE)
    cosigner = fields.String(load_default=None, validate=ROLE)
    resource = fields.String(
        load_default="Observation",
        validate=validate.OneOf(["Observation", "Procedure", "DocumentReference"]),
    )
    plan = fields.Boolean(load_default=False)
    signed_by = fields.String(load_default=None, validate=ROLE)  # a Provenance signature

    @pre_load
    def from_date(self, data: Any, **_: Any) -> Any:
        return {"date": data} if isinstance(data, str) else data  # a date alone: the PT's


class HistorySchema(Schema):
    visits = fields.List(fields.String(), load_default=list)  # earlier finished PT visits
    reports = fields.List(fields.Nested(ReportSchema), load_default=list)
    charges = fields.List(fields.Nested(ChargeSchema), load_default=list)


class LineSchema(Schema):
    code = fields.String(required=True)
    price = fields.Float(load_default=None)
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
    goal = fields.Boolean(load_default=True)
    # the plan of care: by default one starting and certified on the date of service; null: none
    plan_of_care = fields.Nested(
        PlanSchema,
        allow_none=True,
        load_default=lambda: {
            "start": None,
            "certified": "start",
            "end": None,
            "discipline": None,
            "delay_reason": None,
        },
    )
    history = fields.Nested(HistorySchema, load_default=dict)
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
    ]
    if case["goal"]:
        resources.append(builders.goal())
    plan = case["plan_of_care"]
    if plan is not None:
        start = plan["start"] or day
        resources.append(
            builders.care_plan(
                start=start,
                end=plan["end"],
                certified=start if plan["certified"] == "start" else plan["certified"],
                discipline=plan["discipline"],
                delay_reason=plan["delay_reason"],
            )
        )
    for index, spec in enumerate(case["procedures"], start=1):
        resources.append(_procedure(index, spec, day))
        resources.append(builders.observation(f"obs-p{index}", f"p{index}"))
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    for resource in _history(case["history"]):
        assembler.add_history(resource)
    return decide(settings, list(assembler.visits()))


def _history(history: dict[str, Any]) -> list[dict[str, Any]]:
    """Earlier visits, progress reports and charges of the patient, as the EHR would hold them."""
    found: list[dict[str, Any]] = []
    for index, day in enumerate(history.get("visits", ()), start=1):
        found.append(builders.encounter(f"earlier{index}", start=_at(day, "08:00"), hours=1))
    for index, report in enumerate(history.get("reports", ()), start=1):
        found += _report(index, report)
    for index, charge in enumerate(history.get("charges", ()), start=1):
        item: dict[str, Any] = {
            "resourceType": "ChargeItem",
            "id": f"earlier-charge{index}",
            "status": "billed",
            "code": {"coding": [{"system": builders.CPT, "code": charge["code"]}]},
            "subject": {"reference": "Patient/p1"},
            "occurrenceDateTime": charge["date"],
            "quantity": {"value": charge["units"]},
            "extension": [
                {
                    "url": "https://theracharge.example/fhir/StructureDefinition/charge-modifier",
                    "valueCodeableConcept": {
                        "coding": [{"system": HCPCS, "code": charge["modifier"]}]
                    },
                }
            ],
        }
        if charge["amount"] is not None:
            item["priceOverride"] = {"value": charge["amount"], "currency": "USD"}
        found.append(item)
    return found


def _report(index: int, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """A progress report as the EHR holds it, with its writers' PractitionerRoles."""
    kind, when = spec["resource"], _at(spec["date"], "17:00")
    code = {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]}
    writers = [r for r in (spec["author"], spec["cosigner"], spec["signed_by"]) if r]
    refs = [
        {"reference": f"Practitioner/{r.lower()}1"} for r in (spec["author"], spec["cosigner"]) if r
    ]
    report: dict[str, Any] = {"resourceType": kind, "id": f"report{index}"}
    report["subject"] = {"reference": "Patient/p1"}
    plan = [{"reference": "CarePlan/poc1"}] if spec["plan"] else []
    if kind == "DocumentReference":
        author = refs[:1] if spec["author"] else []
        report |= {"status": "current", "type": code, "date": when, "author": author}
        if spec["cosigner"]:
            report["authenticator"] = refs[-1]
        if plan:
            report["context"] = {"related": plan}
    elif kind == "Procedure":
        report |= {"status": "completed", "code": code, "performedDateTime": when}
        report["performer"] = [{"actor": ref} for ref in refs]
        if plan:
            report["basedOn"] = plan
    else:
        report |= {"status": "final", "code": code, "effectiveDateTime": when, "performer": refs}
        report["valueString"] = "Progress toward goals as documented"
        if plan:
            report["basedOn"] = plan
    roles = [
        {
            "resourceType": "PractitionerRole",
            "id": f"role-{role.lower()}",
            "practitioner": {"reference": f"Practitioner/{role.lower()}1"},
            "code": [{"coding": [{"system": builders.NUCC, "code": ROLES[role]}]}],
        }
        for role in writers
    ]
    if spec["signed_by"]:
        who = {"reference": f"Practitioner/{spec['signed_by'].lower()}1"}
        roles.append(
            {
                "resourceType": "Provenance",
                "id": f"signed-report{index}",
                "target": [{"reference": f"{kind}/report{index}"}],
                "recorded": when,
                "agent": [{"who": who}],
                "signature": [
                    {"type": [{"code": "1.2.840.10065.1.12.1.5"}], "when": when, "who": who}
                ],
            }
        )
    return [report, *roles]


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
    for line in expect["lines"]:
        if line["price"] is not None:
            priced = [
                float(ln.price)
                for ln in decision.lines
                if ln.code == line["code"]
                and ln.units == line["units"]
                and ln.price is not None
                and tuple(ln.modifiers) == tuple(line["modifiers"])
            ]
            assert priced == [line["price"]], (case["name"], priced)
    gaps = sorted({f.code for f in decision.findings if f.severity is not Severity.INFO})
    assert gaps == sorted(expect["findings"]), case["name"]
    said = " ".join(e.text for e in decision.explanation)
    for words in expect["explanation_mentions"]:
        assert words in said, (case["name"], said)
    assert len({ln.key for ln in decision.lines}) == len(decision.lines)  # one key per line
