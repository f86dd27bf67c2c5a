"""EHR faults on reads and on the write transaction, through the fault proxy, against the
service under gunicorn: each ends in charges written exactly once, or a clear error and nothing
half-written; a rerun converges and writes nothing more."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from plugin.gateway.client import FhirClient
from plugin.pipeline.hooks import prefetch_from
from tests.reliability.conftest import Stack, stack_running

pytestmark = pytest.mark.slow

# The gather's main read: the patient's day, its encounters with their procedures (one search;
# the sample gives enc-0007 to pat-0007).
READ = r"^/fhir/Encounter\?subject=Patient%2F{patient}&"
WRITE = r"^/fhir/?$"  # the transaction Bundle, POSTed to the base

TRANSIENT = [
    pytest.param("status", {"status": 500}, id="500"),
    pytest.param("status", {"status": 502}, id="502"),
    pytest.param("status", {"status": 503}, id="503"),
    pytest.param("status", {"status": 429, "seconds": 1}, id="429-retry-after"),
    pytest.param("timeout", {"seconds": 3}, id="timeout"),
    pytest.param("reset", {}, id="reset"),
    pytest.param("truncate", {}, id="truncated-body"),
    pytest.param("garbage", {}, id="not-json"),
]


def _encounter(index: int) -> str:
    return f"enc-{index:04d}"


@pytest.mark.parametrize(("index", "fault"), list(enumerate(TRANSIENT, start=1)))
def test_a_passing_fault_on_a_read_is_retried_and_the_charges_written_once(
    stack: Stack, index: int, fault: object
) -> None:
    kind, options = fault.values  # type: ignore[attr-defined]
    encounter = _encounter(index)
    patient = encounter.replace("enc-", "pat-", 1)
    stack.proxy.add("GET", READ.format(patient=patient), kind, times=1, **options)
    answer = stack.charges(encounter)
    assert answer.status_code == 200, answer.text
    assert stack.proxy.faulted(), "the fault was never injected"
    created = answer.json()["written"]["created"]
    assert created
    assert set(stack.ours(encounter)) == set(created)
    stack.converged(encounter)


@pytest.mark.parametrize(
    ("index", "fault"),
    list(
        enumerate(
            [
                pytest.param("status", {"status": 500}, id="500-not-applied"),
                pytest.param("status", {"status": 429, "seconds": 1}, id="429-not-applied"),
                pytest.param("reset", {}, id="reset-before-applied"),
                pytest.param("reset-after", {}, id="reset-after-applied"),
                pytest.param("lost-answer", {}, id="502-after-applied"),
                pytest.param("slow", {"seconds": 3}, id="applied-after-our-timeout"),
                pytest.param("truncate", {}, id="truncated-answer-after-applied"),
            ],
            start=11,
        )
    ),
)
def test_a_fault_on_the_write_never_duplicates_or_half_writes(
    stack: Stack, index: int, fault: object
) -> None:
    """Applied by the EHR or not, the caller saw a failure and sent the transaction again: its
    conditional creates and version-checked updates make the second one change nothing."""
    kind, options = fault.values  # type: ignore[attr-defined]
    encounter = _encounter(index)
    stack.proxy.add("POST", WRITE, kind, times=1, **options)
    answer = stack.charges(encounter)
    assert answer.status_code == 200, answer.text
    assert [h[2] for h in stack.proxy.faulted()] == [kind]
    stack.converged(encounter)


def test_an_ehr_failing_longer_than_the_budget_is_a_clear_502_and_writes_nothing(
    stack: Stack,
) -> None:
    encounter = _encounter(21)
    patient = encounter.replace("enc-", "pat-", 1)
    stack.proxy.add("GET", READ.format(patient=patient), "status", times=1000, status=503)
    answer = stack.charges(encounter)
    assert answer.status_code == 502
    assert answer.json()["error"] == "ehr-error"
    assert "HTTP 503" in answer.json()["message"]
    assert stack.ours(encounter) == {}
    stack.proxy.clear()
    assert stack.charges(encounter).status_code == 200
    stack.converged(encounter)


def test_a_write_refused_every_time_is_a_clear_error_and_nothing_is_half_written(
    stack: Stack,
) -> None:
    encounter = _encounter(22)
    stack.proxy.add("POST", WRITE, "status", times=1000, status=503)
    answer = stack.charges(encounter)
    assert answer.status_code == 502
    assert "HTTP 503" in answer.json()["message"]
    assert stack.ours(encounter) == {}
    stack.proxy.clear()
    assert stack.charges(encounter).status_code == 200
    stack.converged(encounter)


def test_a_hook_whose_write_fails_answers_a_warning_card_and_a_rerun_converges(
    stack: Stack,
) -> None:
    encounter = _encounter(23)
    stack.proxy.add("POST", WRITE, "status", times=1000, status=500)
    answer = stack.hook(encounter, timeout=60)
    assert answer.status_code == 200
    warnings = [c for c in answer.json()["cards"] if c["indicator"] == "warning"]
    assert any("NOT written" in c["summary"] for c in warnings)
    assert stack.ours(encounter) == {}
    stack.proxy.clear()
    again = stack.hook(encounter, timeout=60)
    assert again.status_code == 200
    stack.converged(encounter)


def test_an_ehr_answering_20_s_late_never_holds_a_request_past_its_budget(
    tmp_path: Path, cds_key: Any
) -> None:
    """Every EHR request answered 20 s late, with timeouts and retries that would wait for it
    (30 s each): the hook answers within its budget (3 s here) with the prefetch's cards and a
    card saying the day is queued; the charges API answers 504 with Retry-After within its
    budget (5 s here); nothing reaches gunicorn's 60 s worker timeout. Once the EHR is quick
    again the queued day is written and converges."""
    env = {
        "THERACHARGE_HOOK_BUDGET_SECONDS": "3",
        "THERACHARGE_REQUEST_BUDGET_SECONDS": "5",
        "THERACHARGE_FHIR_READ_TIMEOUT": "30",
        "THERACHARGE_FHIR_RETRY_SECONDS": "30",
    }
    with stack_running(tmp_path, cds_key, **env) as stack:
        encounter = _encounter(3)
        prefetch = prefetch_from(FhirClient(stack.ehr.direct_url), encounter)
        for method in ("GET", "POST"):
            stack.proxy.add(method, r"^/fhir", "slow", times=10_000, seconds=20)
        started = time.monotonic()
        answer = stack.hook(encounter, prefetch, timeout=60)
        took = time.monotonic() - started
        assert answer.status_code == 200, answer.text[:300]
        assert took < 3 + 2, took
        cards = answer.json()["cards"]
        assert any(c["summary"].startswith("EHR slow: billing day not decided yet") for c in cards)
        assert any(c["summary"].startswith("Charges") for c in cards)
        started = time.monotonic()
        api = stack.charges(_encounter(4), timeout=60)
        took = time.monotonic() - started
        assert api.status_code == 504, api.text[:300]
        assert api.headers["Retry-After"].isdigit()
        assert api.json()["error"] == "ehr-too-slow"
        assert took < 5 + 2, took
        stack.proxy.clear()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stack.ours(encounter):
            time.sleep(1)
        assert stack.ours(encounter), "the queued day was never written"
        stack.converged(encounter)
        log = stack.service.log.read_text()
        assert "WORKER TIMEOUT" not in log
