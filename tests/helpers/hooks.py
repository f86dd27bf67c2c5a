"""A CDS hook call as an EHR makes it: the body with its prefetch, the call, the EHR's day."""

from __future__ import annotations

import uuid
from typing import Any

import responses

from tests import builders


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


def call(
    app: Any, body: Any, token: str | None = None, path: str = "/cds-services/therapy-charges"
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return app.test_client().post(path, json=body, headers=headers)


def serve_the_day(base: str, prefetch: dict[str, Any], *extra: dict[str, Any]) -> None:
    """The EHR answering the day search with what the hook prefetched (and `extra`), and a
    CapabilityStatement that offers every include the gather asks for."""
    resources = [
        r
        for value in prefetch.values()
        if isinstance(value, dict)
        for r in ([e["resource"] for e in value.get("entry", [])] if "entry" in value else [value])
    ]
    responses.get(f"{base}/metadata", json=capability_statement())
    responses.get(
        f"{base}/Encounter",
        json={
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in [*resources, *extra]],
        },
    )


def capability_statement() -> dict[str, Any]:
    """An EHR's CapabilityStatement offering every include and revinclude the gather asks for."""
    from plugin.gateway.gather import WANTED

    every = {
        "type": "Encounter",
        "searchInclude": [v for n, v, _ in WANTED if n.startswith("_include")],
        "searchRevInclude": [v for n, v, _ in WANTED if n.startswith("_revinclude")],
        "searchParam": [{"name": "_id"}],
    }
    return {"resourceType": "CapabilityStatement", "rest": [{"resource": [every]}]}


def serve_encounter_day(base: str, resources: list[dict[str, Any]]) -> None:
    """An EHR that searches Encounter only (so a day is one search and nothing else is read):
    its CapabilityStatement and the searchset of `resources`, under `responses`."""
    responses.get(
        f"{base}/metadata",
        json={
            "resourceType": "CapabilityStatement",
            "rest": [{"resource": [{"type": "Encounter", "searchParam": [{"name": "_id"}]}]}],
        },
    )
    responses.get(
        f"{base}/Encounter",
        json={"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]},
    )
