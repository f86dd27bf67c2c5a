"""The Oracle Health outlet against a stateful stand-in for Millennium's ChargeItem API
(tests/oracle_fake.py, a real HTTP server enforcing the published contract): one $create per
line, nothing on a rerun, $modify with `replacing` and the current version, $credit, a refusal
held with the EHR's words, a 409 answered by reading the day again, a lost answer never turned
into a second charge."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from plugin.config.files import Settings, load_settings
from plugin.gateway.client import FhirClient
from plugin.gateway.errors import TemporaryFhirError
from plugin.gateway.gather import Gatherer
from plugin.outlets import outlet_for
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode, run_day
from plugin.rules.lines import LineStatus
from plugin.schemas.errors import ConfigError
from plugin.store import Store
from tests import builders
from tests.oracle_fake import EXT, FakeMillennium, millennium

WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
KEY = "Patient/p1/2026-11-02/PT/Organization/clinic/97110"
SITE = """
source: test tenant
oracle_health:
  tenant: tenant-1
  schedules: {CPT: "615214", HCPCS: "615215", ICD: "615216", MODIFIER: "615217"}
"""


def record(minutes: int | None = 30) -> list[dict[str, Any]]:
    return builders.complete_record(builders.procedure("p1", "97110", minutes=minutes))


@pytest.fixture
def fake() -> Iterator[FakeMillennium]:
    with millennium(record()) as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'outlet.db'}")
    store.migrate()
    return store


def settings_for(fake: FakeMillennium, tmp_path: Path) -> Settings:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "outlet.yaml").write_text(SITE)
    return load_settings(
        {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "THERACHARGE_CONFIG_DIR": str(site),
            "THERACHARGE_OUTLET": "oracle-health",
            "THERACHARGE_FHIR_BASE_URL": fake.base,
            "THERACHARGE_FHIR_RETRY_SECONDS": "0.2",
        }
    )


def run(settings: Settings, store: Store, **options: Any) -> DayRun:
    client = FhirClient(settings.fhir.base_url or "")
    outlet = outlet_for(settings, client, store)
    source = DaySource(Gatherer(client), None, ("Patient/p1", "2026-11-02"))
    return run_day(settings, "e1", source, WriteMode.WRITE, WHEN, "t", outlet=outlet, **options)


def test_a_line_is_one_create_field_by_field_and_a_rerun_sends_nothing(
    fake: FakeMillennium, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    first = run(settings, store)
    assert first.written
    ((path, body),) = fake.calls
    assert path == "ChargeItem/$create"
    params = {p["name"]: p for p in body["parameter"]}
    assert params["transactionId"]["valueUuid"].startswith("urn:uuid:")
    item = params["chargeItem"]["resource"]
    assert item["status"] == "unknown"
    assert item["subject"] == {"reference": "Patient/p1"}
    assert item["context"] == {"reference": "Encounter/e1"}
    assert item["occurrenceDateTime"] == "2026-11-02"
    assert item["quantity"] == {"value": 2}
    (coding,) = item["code"]["coding"]
    assert coding["system"] == "https://fhir.cerner.com/tenant-1/CodeSystem/BillCodes-CPT"
    assert coding["code"] == "97110"
    assert coding["extension"] == [
        {
            "url": EXT + "bill-code-schedule",
            "valueCoding": {
                "system": "https://fhir.cerner.com/tenant-1/codeSet/14002",
                "code": "615214",
            },
        }
    ]
    (modifier,) = [e for e in item["extension"] if e["url"] == EXT + "modifier-code"]
    assert modifier["extension"][0]["valueCoding"]["code"] == "GP"
    assert modifier["extension"][0]["valueCoding"]["system"].endswith("/BillCodes-MODIFIER")
    assert modifier["extension"][1] == {"url": "priority", "valuePositiveInt": 1}
    (reason,) = item["reason"]
    assert reason["coding"][0]["system"].endswith("/BillCodes-ICD")
    assert reason["coding"][0]["code"] == "M25.561"
    assert reason["extension"] == [{"url": EXT + "priority", "valuePositiveInt": 1}]
    assert [p["function"]["coding"][0]["code"] for p in item["performer"]] == ["PRF"]
    assert not {"identifier", "priceOverride", "enterer", "account", "bodysite"} & set(item)
    (held,) = fake.billable()
    assert held["quantity"] == {"value": 2}
    again = run(settings, store)
    assert not again.written
    assert again.plan is not None
    assert again.plan.summary()["unchanged"] == [KEY]
    assert len(fake.calls) == 1  # nothing sent


def test_a_change_is_a_modify_replacing_the_current_version_and_a_gone_line_a_credit(
    fake: FakeMillennium, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    run(settings, store)
    (first,) = fake.billable()
    first["meta"]["versionId"] = "2"  # someone touched it in Millennium since
    fake.record = record(45)  # three units now
    changed = run(settings, store)
    assert changed.written
    path, body = fake.calls[-1]
    assert path == f"ChargeItem/{first['id']}/$modify"
    item = body["parameter"][1]["resource"]
    (replacing,) = [e for e in item["extension"] if e["url"] == EXT + "replacing"]
    assert replacing["valueReference"] == {"reference": f"ChargeItem/{first['id']}"}
    assert replacing["extension"] == [{"url": "item-version", "valueString": "2"}]
    (now,) = fake.billable()
    assert now["quantity"] == {"value": 3}
    fake.record = record(None)  # the minutes gone: held for documentation
    gone = run(settings, store)
    assert gone.decision.lines[0].status is LineStatus.PLANNED
    path, body = fake.calls[-1]
    assert path == f"ChargeItem/{now['id']}/$credit"
    params = {p["name"]: p for p in body["parameter"]}
    assert params["versionId"]["valueString"] == "1"
    assert params["context"]["valueReference"] == {"reference": "Encounter/e1"}
    assert fake.billable() == []
    assert store.delivered_lines("oracle-health", ("Patient/p1/2026-11-02",)) == {}


def test_a_refusal_holds_the_line_with_the_ehrs_words(
    fake: FakeMillennium, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    fake.fail_next(422, "Bill item 97110 is not active for this encounter's financial class")
    refused = run(settings, store, report_write_errors=True)
    (line,) = refused.decision.lines
    assert line.status is LineStatus.PLANNED
    (hold,) = [h for h in line.holds if h.code == "billing-system-refused"]
    assert "not active for this encounter's financial class" in hold.message
    assert fake.billable() == []
    assert store.delivered_lines("oracle-health", ("Patient/p1/2026-11-02",)) == {}


def test_a_409_reads_the_day_again_and_sends_with_the_current_version(
    fake: FakeMillennium, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    run(settings, store)
    fake.record = record(45)
    fake.fail_next(409, "the item-version is not the current one")
    changed = run(settings, store)
    assert changed.attempts == 2  # read again after the conflict
    assert [c[0].rsplit("/", 1)[-1] for c in fake.calls] == ["$create", "$modify", "$modify"]
    (now,) = fake.billable()
    assert now["quantity"] == {"value": 3}


def test_a_lost_answer_is_found_by_the_next_run_never_charged_twice(
    fake: FakeMillennium, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    fake.lose_next()  # Millennium creates the item; the answer never comes back
    with pytest.raises(TemporaryFhirError):
        run(settings, store)
    (pending,) = store.pending_messages("oracle-health", ("Patient/p1/2026-11-02",))
    again = run(settings, store)
    assert again.plan is not None
    assert again.plan.summary()["unchanged"] == [KEY]  # the created item was found and adopted
    assert len(fake.billable()) == 1
    assert [c[0] for c in fake.calls] == ["ChargeItem/$create"]  # sent once
    assert pending.control_id in fake.transactions
    assert store.pending_messages("oracle-health", ("Patient/p1/2026-11-02",)) == []


def test_the_oracle_outlet_needs_its_tenant_and_schedules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"oracle_health.tenant, .*schedules.CPT.*needed"):
        load_settings(
            {"THERACHARGE_INSTANCE_DIR": str(tmp_path), "THERACHARGE_OUTLET": "oracle-health"}
        )


def test_the_referring_physician_goes_as_performer_op(store: Store, tmp_path: Path) -> None:
    day = record()
    day[0]["participant"] = [
        {
            "type": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "REF",
                        }
                    ]
                }
            ],
            "individual": {"reference": "Practitioner/md1"},
        }
    ]
    with millennium(day) as fake:
        run(settings_for(fake, tmp_path), store)
        ((_, body),) = fake.calls
    item = body["parameter"][1]["resource"]
    functions = {
        (p["function"]["coding"][0]["code"], p["actor"]["reference"]) for p in item["performer"]
    }
    assert functions == {("PRF", "Practitioner/pt1"), ("OP", "Practitioner/md1")}


def test_a_pending_call_that_fails_again_is_the_runs_error_when_errors_are_reported(
    fake: FakeMillennium, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(fake, tmp_path)
    fake.fail_next(503, "down for maintenance")  # not done, and said so
    with pytest.raises(TemporaryFhirError):
        run(settings, store)
    fake.fail_next(503, "down for maintenance")  # still down when the next run settles it
    again = run(settings, store, report_write_errors=True)  # a hook call: a card, not a 502
    assert again.error is not None
    assert "503" in again.error
    assert not again.written
    assert fake.billable() == []
    assert len(store.pending_messages("oracle-health", ("Patient/p1/2026-11-02",))) == 1
