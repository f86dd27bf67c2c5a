"""The deployed layout in tests: its settings, its services, the EHR's notifications to it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests

from plugin.gateway.client import FhirClient
from tests.reliability.conftest import ADMIN, ISSUER, SECRET, TOKENS, Stack


def layout_env(database: str, broker: str, fhir_base: str, jwks: Path) -> dict[str, str]:
    """The settings of every instance and worker: those of deploy/compose.yaml (tests/
    test_deploy.py holds the two alike), with the test's own timings."""
    return {
        "THERACHARGE_DATABASE_URL": database,
        "THERACHARGE_BROKER_URL": broker,
        "THERACHARGE_FHIR_BASE_URL": fhir_base,
        "THERACHARGE_WRITE_MODE": "direct",
        "THERACHARGE_API_TOKENS": TOKENS,
        "THERACHARGE_NOTIFICATION_SECRET": SECRET,
        "THERACHARGE_CDS_ISSUERS": ISSUER,
        "THERACHARGE_CDS_JWKS": str(jwks),
        "THERACHARGE_SECRET_KEY": "one-key-for-every-instance",
        # the test's timings: short, so a killed worker's claim expires within the test
        "THERACHARGE_NOTIFICATION_CLAIM_SECONDS": "5",
        "THERACHARGE_SWEEP_SECONDS": "1",
        "THERACHARGE_FHIR_READ_TIMEOUT": "10",
        "THERACHARGE_FHIR_RETRY_SECONDS": "8",
        # the hooks here answer from the EHR, not past their budget (the count of work below)
        "THERACHARGE_HOOK_BUDGET_SECONDS": "30",
    }


SERVICES = {  # what the test starts: deploy/compose.yaml's services
    "web-1": "serve",
    "web-2": "serve",
    "worker-1": "worker",
    "worker-2": "worker",
}


def notify(stack: Stack, encounter: str) -> requests.Response:
    """The EHR's Subscription: the finished Encounter, PUT with our shared secret."""
    resource = FhirClient(stack.ehr.direct_url).read(f"Encounter/{encounter}")
    return requests.put(
        f"{stack.service.url}/notifications/fhir/Encounter/{encounter}",
        json=resource,
        headers={"X-TheraCharge-Secret": SECRET},
        timeout=30,
    )


def notifications(stack: Stack, status: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{stack.service.url}/admin/api/v1/notifications?status={status}",
        headers=ADMIN,
        timeout=30,
    )
    assert answer.status_code == 200
    return answer.json()  # type: ignore[no-any-return]


def wait_until_done(stack: Stack, count: int, seconds: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = notifications(stack, "done")
        if len(done) >= count:
            return done
        time.sleep(0.5)
    raise AssertionError(
        f"only {len(notifications(stack, 'done'))} of {count} notifications done; pending "
        f"{notifications(stack, 'pending')}, processing {notifications(stack, 'processing')}, "
        f"failed {notifications(stack, 'failed')}"
    )
