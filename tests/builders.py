"""Small FHIR R4 resources for tests, built field by field so each test shows what it varies."""

from __future__ import annotations

from typing import Any

from plugin.sample.notes import clean_note

CPT = "http://www.ama-assn.org/go/cpt"
SNOMED = "http://snomed.info/sct"
NUCC = "http://nucc.org/provider-taxonomy"
PAYER_ID = "https://ehr.example.org/fhir/payer-id"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
MINUTES_URL = "https://theracharge.example/fhir/StructureDefinition/billable-minutes"
PERFORMER_PERIOD = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Procedure.performer.period"
)

Json = dict[str, Any]


def encounter(
    eid: str = "e1", start: str = "2026-11-02T08:00:00-05:00", hours: int = 4, **extra: Any
) -> Json:
    resource: Json = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": start, "end": _plus(start, 60 * hours) if "T" in start else start},
        "serviceProvider": {"reference": "Organization/clinic"},
        "diagnosis": [{"condition": {"reference": "Condition/c1"}, "rank": 1}],
    }
    resource.update(extra)
    return resource


def procedure(
    pid: str,
    code: str = "97110",
    start: str | None = "2026-11-02T09:00:00-05:00",
    minutes: int | None = 20,
    system: str = CPT,
    role: str | None = "225100000X",
    encounter_id: str = "e1",
    **extra: Any,
) -> Json:
    resource: Json = {
        "resourceType": "Procedure",
        "id": pid,
        "status": "completed",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": f"Encounter/{encounter_id}"},
        "performer": [performer("Practitioner/pt1", role)],
        "bodySite": [{"coding": [{"system": SNOMED, "code": "72696002", "display": "Knee"}]}],
        "reasonReference": [{"reference": "Condition/c1"}],
        "note": [{"text": clean_note(code)}],
    }
    if start is not None and minutes is not None:
        resource["performedPeriod"] = {"start": start, "end": _plus(start, minutes)}
    resource.update(extra)
    return resource


def performer(actor: str, role: str | None, period: tuple[str, str] | None = None) -> Json:
    entry: Json = {"actor": {"reference": actor}}
    if role:
        entry["function"] = {"coding": [{"system": NUCC, "code": role}]}
    if period:
        entry["extension"] = [
            {"url": PERFORMER_PERIOD, "valuePeriod": {"start": period[0], "end": period[1]}}
        ]
    return entry


def _plus(start: str, minutes: int) -> str:
    from datetime import datetime, timedelta

    return (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()


def condition(cid: str = "c1", *codings: tuple[str, str]) -> Json:
    pairs = codings or ((ICD10CM, "M25.561"),)
    return {
        "resourceType": "Condition",
        "id": cid,
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": s, "code": c} for s, c in pairs]},
    }


def coverage(
    cid: str = "cov1", payer_value: str = "MEDICARE-B", order: int = 1, **extra: Any
) -> Json:
    resource: Json = {
        "resourceType": "Coverage",
        "id": cid,
        "status": "active",
        "beneficiary": {"reference": "Patient/p1"},
        "payor": [{"identifier": {"system": PAYER_ID, "value": payer_value}}],
        "order": order,
    }
    resource.update(extra)
    return resource


def goal(gid: str = "g1") -> Json:
    return {
        "resourceType": "Goal",
        "id": gid,
        "lifecycleStatus": "active",
        "subject": {"reference": "Patient/p1"},
        "description": {"text": "Climb stairs without a rail"},
        "addresses": [{"reference": "Condition/c1"}],
    }


def observation(oid: str, procedure_id: str, value: float = 95) -> Json:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "partOf": [{"reference": f"Procedure/{procedure_id}"}],
        "subject": {"reference": "Patient/p1"},
        "code": {"text": "Knee flexion range of motion"},
        "valueQuantity": {"value": value, "unit": "deg"},
    }


CERTIFIED_URL = "https://theracharge.example/fhir/StructureDefinition/plan-of-care-certified"
DELAY_REASON_URL = (
    "https://theracharge.example/fhir/StructureDefinition/plan-of-care-certification-delay-reason"
)
DISCIPLINE_CODES = "https://theracharge.example/fhir/CodeSystem/therapy-discipline"


def care_plan(
    cid: str = "poc1",
    start: str = "2026-10-26",
    end: str | None = None,
    certified: str | None = "2026-10-28",
    discipline: str | None = None,
    status: str = "active",
    delay_reason: str | None = None,
) -> Json:
    """A therapy plan of care: its period starts on the first treatment; certified on a date
    (with the reason a delayed certification gives, in the site's extension)."""
    resource: Json = {
        "resourceType": "CarePlan",
        "id": cid,
        "status": status,
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "period": {"start": start, **({"end": end} if end else {})},
        "goal": [{"reference": "Goal/g1"}],
    }
    if certified:
        resource["extension"] = [{"url": CERTIFIED_URL, "valueDate": certified}]
    if delay_reason:
        extension = {"url": DELAY_REASON_URL, "valueString": delay_reason}
        resource.setdefault("extension", []).append(extension)
    if discipline:
        resource["category"] = [{"coding": [{"system": DISCIPLINE_CODES, "code": discipline}]}]
    return resource


def complete_record(*procedures: Json, visit: Json | None = None) -> list[Json]:
    """A clean visit: the procedures with an encounter, diagnosis, coverage, goal, a certified
    plan of care and a measure."""
    measures = [observation(f"obs-{p['id']}", p["id"]) for p in procedures]
    return [
        visit or encounter(),
        condition(),
        coverage(),
        goal(),
        *procedures,
        *measures,
        care_plan(),
    ]
