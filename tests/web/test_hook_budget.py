"""A hook call ends within its time budget whatever the EHR does (issue 30, item 2): past it,
the answer is the prefetch's alone, with a card saying so; in direct mode the day is queued as
a notification would be. The real-time figure is in tests/reliability/test_ehr_faults.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
import responses
from prometheus_client import REGISTRY

from tests.helpers.hooks import call, hook_body, serve_the_day

BASE = "https://ehr.example.org/fhir"


def too_slow() -> float:
    """theracharge_ehr_errors_total{kind="too-slow"} in this process."""
    value = REGISTRY.get_sample_value("theracharge_ehr_errors_total", {"kind": "too-slow"})
    return value or 0.0


def _slow_day(body: dict[str, Any], seconds: float) -> None:
    """The EHR: capabilities at once, then every search `seconds` late."""
    serve_the_day(BASE, body["prefetch"])
    responses.remove(responses.GET, f"{BASE}/Encounter")

    def late(_: Any) -> tuple[int, dict[str, str], str]:
        time.sleep(seconds)  # answered, but only after the budget
        return 200, {}, '{"resourceType": "Bundle", "type": "searchset", "entry": []}'

    responses.add_callback(responses.GET, f"{BASE}/Encounter", callback=late)


@pytest.mark.parametrize(
    ("mode", "queued"), [("direct", True), ("system-actions", False), ("preview", False)]
)
@responses.activate
def test_past_the_budget_the_hook_answers_from_the_prefetch(
    make_app, sign, mode: str, queued: bool
) -> None:
    body = hook_body(fhirServer=BASE)
    _slow_day(body, 1.0)
    app = make_app(
        THERACHARGE_FHIR_BASE_URL=BASE,
        THERACHARGE_WRITE_MODE=mode,
        THERACHARGE_HOOK_BUDGET_SECONDS="0.5",
    )
    slow = too_slow()
    answer = call(app, body, sign())
    assert answer.status_code == 200
    assert too_slow() == slow + 1  # counted once (by the run that ran out of time)
    summaries = [c["summary"] for c in answer.json["cards"]]
    assert any(s.startswith("EHR slow") for s in summaries), summaries
    assert any(s.startswith("Charges") for s in summaries), summaries  # the prefetched visit
    assert "systemActions" not in answer.json  # nothing proposed from a partial day
    assert not [c for c in responses.calls if c.request.method == "POST"]  # nothing written
    state = app.extensions["theracharge"]
    pending = state.store.notifications("pending")
    assert len(pending) == (1 if queued else 0)
    if queued:
        (row,) = pending
        assert row.encounter_id == "e1"
        assert row.day == "Patient/p1|2026-11-02"
        assert row.version.startswith("hook:")
    deferred = [c for c in answer.json["cards"] if c["summary"].startswith("EHR slow")]
    assert ("queued" in deferred[0]["detail"]) is queued


@responses.activate
def test_past_the_budget_the_charges_api_is_504_with_retry_after(make_app) -> None:
    from plugin.config.tokens import token_hash

    body = hook_body(fhirServer=BASE)
    _slow_day(body, 1.0)
    responses.get(f"{BASE}/Encounter/e1", json=body["prefetch"]["encounter"])
    app = make_app(
        THERACHARGE_FHIR_BASE_URL=BASE,
        THERACHARGE_REQUEST_BUDGET_SECONDS="0.5",
        THERACHARGE_API_TOKENS=f"bill=sha256:{token_hash('billing-token')}",
    )
    slow = too_slow()
    answer = app.test_client().post(
        "/api/v1/encounters/e1/charges", headers={"Authorization": "Bearer billing-token"}
    )
    assert answer.status_code == 504
    assert too_slow() == slow + 1  # the run and the error handler both saw it: counted once
    assert answer.json["error"] == "ehr-too-slow"
    assert int(answer.headers["Retry-After"]) > 0


@pytest.mark.parametrize("seconds", ["0", "-1", "46", "soon"])
def test_a_budget_out_of_range_stops_the_start_naming_it(seconds: str) -> None:
    from plugin.config.files import load_settings
    from plugin.schemas.errors import ConfigError

    with pytest.raises(ConfigError, match="THERACHARGE_HOOK_BUDGET_SECONDS"):
        load_settings({"THERACHARGE_HOOK_BUDGET_SECONDS": seconds})
