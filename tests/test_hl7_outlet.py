"""The HL7 v2 outlet against a real MLLP listener (tests/hl7_receiver.py, python-hl7's asyncio
server on 127.0.0.1): one DFT^P03 per billing day, reruns send nothing, a change is a credit and
a charge in one message, a refusal holds the lines with the receiver's words, a lost ACK is sent
again with the same control id and posted once, a restart mid-run finishes what was pending.
The EHR the day is read from is mocked with `responses` (the MLLP socket is not HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import responses

from plugin.config.files import Settings, load_settings
from plugin.gateway.client import FhirClient
from plugin.gateway.gather import Gatherer
from plugin.gateway.mllp import NoAck
from plugin.outlets import outlet_for, sender_for
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode, run_day
from plugin.rules.lines import LineStatus
from plugin.store import Store
from tests import builders
from tests.helpers.hooks import serve_encounter_day
from tests.hl7_receiver import Receiver, receiving

BASE = "https://ehr.example.org/fhir"
WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
KEY = "Patient/p1/2026-11-02/PT/Organization/clinic/97110"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as listening:
        yield listening


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'outlet.db'}")
    store.migrate()
    return store


def settings_for(receiver: Receiver, tmp_path: Path, **extra: str) -> Settings:
    return load_settings(
        {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path / "instance"),
            "THERACHARGE_OUTLET": "hl7v2",
            "THERACHARGE_HL7_HOST": "127.0.0.1",
            "THERACHARGE_HL7_PORT": str(receiver.port),
            "THERACHARGE_HL7_ACK_TIMEOUT_SECONDS": "1",
            "THERACHARGE_HL7_ATTEMPTS": "2",
            **extra,
        }
    )


def serve_day(record: list[dict[str, Any]]) -> None:
    serve_encounter_day(BASE, record)


def record(minutes: int = 30, **extra: Any) -> list[dict[str, Any]]:
    return builders.complete_record(builders.procedure("p1", "97110", minutes=minutes, **extra))


def run(settings: Settings, store: Store, sender: Any = None, **options: Any) -> DayRun:
    sender = sender or sender_for(settings)
    outlet = outlet_for(settings, None, store, sender)
    source = DaySource(Gatherer(FhirClient(BASE)), None, ("Patient/p1", "2026-11-02"))
    return run_day(settings, "e1", source, WriteMode.WRITE, WHEN, "t", outlet=outlet, **options)


@responses.activate
def test_a_day_goes_as_one_dft_p03_and_a_rerun_sends_nothing(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    serve_day(record())
    settings = settings_for(receiver, tmp_path)
    first = run(settings, store)
    assert first.written
    assert first.plan is not None
    assert first.plan.summary()["created"] == [KEY]
    (message,) = receiver.messages
    assert message.split("\r")[0].split("|")[8] == "DFT^P03^DFT_P03"
    assert [(f.key, f.kind, f.code, f.units, f.modifiers) for f in receiver.posted] == [
        (KEY, "CG", "97110", 2, "GP")
    ]
    again = run(settings, store)
    assert not again.written
    assert again.plan is not None
    assert again.plan.summary()["unchanged"] == [KEY]
    assert len(receiver.messages) == 1  # nothing new went out


@responses.activate
def test_a_changed_line_is_its_credit_and_a_new_charge_in_one_message(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(receiver, tmp_path)
    serve_day(record(30))
    run(settings, store)
    responses.reset()
    serve_day(record(45))  # the therapist corrected the minutes: three units now
    changed = run(settings, store)
    assert changed.plan is not None
    assert changed.plan.summary()["updated"] == [KEY]
    assert len(receiver.messages) == 2
    second = [f for f in receiver.posted if f.control_id != receiver.posted[0].control_id]
    assert [(f.kind, f.units) for f in second] == [("CD", 2), ("CG", 3)]
    assert receiver.balance() == {KEY: 3}


@responses.activate
def test_a_line_no_longer_billable_is_credited(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    settings = settings_for(receiver, tmp_path, THERACHARGE_CONFIG_DIR="")
    serve_day(record(30))
    run(settings, store)
    responses.reset()
    serve_day(record(None))  # the minutes gone: the line is held for documentation
    held = run(settings, store)
    (line,) = held.decision.lines
    assert line.status is LineStatus.PLANNED
    assert held.plan is not None
    assert held.plan.summary()["entered_in_error"] == [KEY]
    assert receiver.balance() == {}
    assert store.delivered_lines("hl7v2", ("Patient/p1/2026-11-02",)) == {}


@responses.activate
def test_a_refusal_holds_the_lines_with_the_receivers_words_and_keeps_nothing(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    serve_day(record())
    settings = settings_for(receiver, tmp_path)
    receiver.next(("AE", "Rendering provider 1234567893 is not on file"))
    refused = run(settings, store, report_write_errors=True)
    (line,) = refused.decision.lines
    assert line.status is LineStatus.PLANNED
    (hold,) = [h for h in line.holds if h.code == "billing-system-refused"]
    assert "Rendering provider 1234567893 is not on file" in hold.message
    assert not refused.written
    assert refused.error is not None
    assert "refused" in refused.error
    assert receiver.posted == []
    assert store.delivered_lines("hl7v2", ("Patient/p1/2026-11-02",)) == {}
    fixed = run(settings, store)  # the receiver's set-up fixed: the day goes again
    assert fixed.written
    assert receiver.balance() == {KEY: 2}


@responses.activate
def test_a_lost_ack_is_sent_again_with_the_same_control_id_and_posted_once(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    serve_day(record())
    settings = settings_for(receiver, tmp_path)
    receiver.next(("drop", None))  # posted, but the ACK never comes back
    done = run(settings, store)
    assert done.written
    first, second = receiver.messages
    assert first == second  # the same message, its control id (MSH-10) and all
    assert receiver.connections == 2  # sent again on a new connection
    assert receiver.balance() == {KEY: 2}  # posted once


@responses.activate
def test_a_slow_ack_past_the_timeout_is_sent_again_and_posted_once(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    serve_day(record())
    settings = settings_for(receiver, tmp_path, THERACHARGE_HL7_ACK_TIMEOUT_SECONDS="0.3")
    receiver.next(("slow", 1.0))
    done = run(settings, store)
    assert done.written
    assert len(receiver.messages) == 2
    assert receiver.balance() == {KEY: 2}


@responses.activate
def test_a_message_left_pending_is_finished_first_by_the_next_run_after_a_restart(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    """No ACK on any attempt: the run fails (its trigger retries it) and the message stays
    pending; the next run — here in a new process, with a new connection — sends it again with
    its control id before planning, and the receiver posts it once."""
    serve_day(record())
    settings = settings_for(receiver, tmp_path)
    receiver.next(("drop", None), ("drop", None))
    with pytest.raises(NoAck):
        run(settings, store)
    (pending,) = store.pending_messages("hl7v2", ("Patient/p1/2026-11-02",))
    restarted = run(settings, store, sender=sender_for(settings))  # a new process's connection
    assert not restarted.written  # nothing new: the pending message carried the day
    assert restarted.plan is not None
    assert restarted.plan.summary()["unchanged"] == [KEY]
    assert {m.split("\r")[0].split("|")[9] for m in receiver.messages} == {pending.control_id}
    assert receiver.balance() == {KEY: 2}
    assert store.pending_messages("hl7v2", ("Patient/p1/2026-11-02",)) == []


@responses.activate
def test_a_code_without_a_charge_master_entry_is_held_not_sent(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "outlet.yaml").write_text(
        "source: test\nhl7v2:\n  charge_code: cdm\n  cdm: {'97112': 'CDM-4112'}\n"
    )
    serve_day(record())
    settings = settings_for(receiver, tmp_path, THERACHARGE_CONFIG_DIR=str(site))
    held = run(settings, store)
    (line,) = held.decision.lines
    assert line.status is LineStatus.PLANNED
    assert [h.code for h in line.holds] == ["charge-code-unmapped"]
    assert receiver.messages == []


def test_settled_messages_are_pruned_with_the_ledger_pending_ones_stay(
    store: Store, tmp_path: Path
) -> None:
    from datetime import UTC

    store.record_message("hl7v2", "Patient/p1/2026-11-02", "TC-OLD", "MSH|…", [])
    store.message_answered("TC-OLD", True, "AA")
    store.record_message("hl7v2", "Patient/p1/2026-11-02", "TC-WAITING", "MSH|…", [])
    assert store.prune_outlet_messages(datetime(2000, 1, 1, tzinfo=UTC)) == 0  # none that old
    assert store.prune_outlet_messages(datetime.now(UTC) + timedelta(days=1)) == 1
    assert [m["control_id"] for m in store.outlet_messages("hl7v2")] == ["TC-WAITING"]


@responses.activate
def test_a_slow_billing_system_never_outlasts_the_requests_time_budget(
    receiver: Receiver, store: Store, tmp_path: Path
) -> None:
    """A hook call in direct mode has seconds, not the ACK timeout times its attempts: the wait
    for the ACK is cut to what is left, then OutOfTime (the hook answers and queues the day);
    the message stays pending for the next run."""
    import time

    from plugin.deadline import OutOfTime, budget

    serve_day(record())
    settings = settings_for(receiver, tmp_path, THERACHARGE_HL7_ACK_TIMEOUT_SECONDS="30")
    receiver.next(("slow", 3.0), ("slow", 3.0))
    started = time.monotonic()
    with pytest.raises(OutOfTime), budget(0.8):
        run(settings, store)
    assert time.monotonic() - started < 2.5
    assert len(store.pending_messages("hl7v2", ("Patient/p1/2026-11-02",))) == 1
