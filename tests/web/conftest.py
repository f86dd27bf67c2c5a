"""A test app with its own database, CDS client keys, and prefetch built from a clean record."""

from __future__ import annotations

import uuid
from typing import Any

from tests import builders
from tests.conftest import ISSUER, KID, SERVICE_URL  # noqa: F401 (re-exported for the tests)


def prefetch_of(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The prefetch an EHR would send for our templates, from a visit's resources."""

    def bundle(kind: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in resources if r["resourceType"] == kind],
        }

    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    procedures = bundle("Procedure")  # with their performers (_include=Procedure:performer)
    procedures["entry"] += [
        {"resource": r} for r in resources if r["resourceType"] == "Practitioner"
    ]
    return {
        "encounter": encounter,
        "procedures": procedures,
        "conditions": bundle("Condition"),
        "coverage": bundle("Coverage"),
        "observations": bundle("Observation"),
        "chargeItems": bundle("ChargeItem"),
        "patient": next((r for r in resources if r["resourceType"] == "Patient"), None),
        "carePlans": {
            **bundle("CarePlan"),
            "entry": [
                {"resource": r} for r in resources if r["resourceType"] in ("CarePlan", "Goal")
            ],
        },
    }


def hook_body(prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    resources = builders.complete_record(
        builders.procedure("p1", "97110", minutes=33),
        builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
        builders.procedure("p3", "97112", start=None, minutes=None),
    )
    for resource in resources:  # the goal reaches a prefetch through the plan of care
        if resource["resourceType"] == "Procedure":
            resource["basedOn"] = [{"reference": "CarePlan/plan1"}]
    body: dict[str, Any] = {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "PractitionerRole/pt1", "patientId": "p1", "encounterId": "e1"},
        "prefetch": prefetch if prefetch is not None else prefetch_of(resources),
    }
    body.update(extra)
    return body
