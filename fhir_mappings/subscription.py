"""The FHIR R4 Subscription that makes the EHR notify us when a visit is finished."""

from __future__ import annotations

from typing import Any


def subscription(endpoint: str, header: str, secret: str) -> dict[str, Any]:
    """An R4 rest-hook Subscription with payload: the EHR PUTs each finished Encounter to
    {endpoint}/Encounter/{id}, with our shared-secret header."""
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "TheraCharge: decide therapy charges when an encounter is finished",
        "criteria": "Encounter?status=finished",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint.rstrip("/"),
            "payload": "application/fhir+json",
            "header": [f"{header}: {secret}"],
        },
    }
