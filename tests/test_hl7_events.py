"""HL7 v2 events in over MLLP (plugin/pipeline/events.py, plugin/gateway/mllp.MllpListener):
sent by python-hl7's own MLLP client as an interface engine would; each visit recorded as a
notification before the AA, the rest answered AR or AE with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hl7
import pytest
import responses
from hl7.client import MLLPClient

from plugin.config.files import load_settings
from plugin.gateway.mllp import MllpListener
from plugin.pipeline.events import EventIntake
from plugin.pipeline.runtime import Runtime
from plugin.store import Store
from tests import builders

BASE = "https://ehr.example.org/fhir"


def adt(control: str = "C1001", visit: str = "V-77", kind: str = "ADT^A03^ADT_A03") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|ENGINE|HOSP|THERACHARGE|THERAPY|20261102173000||{kind}|{control}|P|2.5.1",
            "EVN|A03|20261102173000",
            "PID|1||MRN0042^^^HOSP^MR||Rivera^Ana",
            f"PV1|1|O|||||||||||||||||{visit}^^^HOSP^VN",
        ]
    )


def mdm(status: str, control: str = "C2001") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|ENGINE|HOSP|THERACHARGE|THERAPY|20261102173000||MDM^T02^MDM_T02|{control}|P|2.5.1",
            "EVN|T02|20261102173000",
            "PID|1||MRN0042^^^HOSP^MR||Rivera^Ana",
            "PV1|1|O|||||||||||||||||V-77^^^HOSP^VN",
            f"TXA|1|PN|TX|20261102||||||||DOC-1|||||{status}",
            "OBX|1|TX|||Daily note",
        ]
    )


@pytest.fixture
def sent() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    settings = load_settings(
        {
            "THERACHARGE_INSTANCE_DIR": str(tmp_path),
            "THERACHARGE_FHIR_BASE_URL": BASE,
            "THERACHARGE_FHIR_RETRY_SECONDS": "0.2",
        }
    )
    store = Store(f"sqlite:///{tmp_path / 'events.db'}")
    store.migrate()
    return Runtime(settings, store)


@pytest.fixture
def listening(runtime: Runtime, sent: list[tuple[str, int]]) -> Iterator[MllpListener]:
    intake = EventIntake(runtime, send=lambda kind, row: sent.append((kind, row)))
    listener = MllpListener("127.0.0.1", 0, intake)  # 0: any free port
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()


def send(listener: MllpListener, *messages: str) -> list[Any]:
    """Each message on one kept-open connection, as an engine sends them; their ACKs."""
    with MLLPClient("127.0.0.1", listener.port) as client:
        return [hl7.parse(client.send_message(m).decode().strip("\x0b\x1c\r")) for m in messages]


def encounters(*found: dict[str, Any]) -> None:
    responses.get(
        f"{BASE}/Encounter",
        json={"resourceType": "Bundle", "entry": [{"resource": r} for r in found]},
    )


def msa(answer: Any) -> tuple[str, str, str]:
    segment = answer.segment("MSA")
    return str(segment[1]), str(segment[2]), answer.unescape(str(segment[3]))


@responses.activate
def test_a_visit_ended_is_recorded_before_its_aa_and_a_repeat_once(
    listening: MllpListener, runtime: Runtime, sent: list[tuple[str, int]]
) -> None:
    encounters(builders.encounter())
    first, repeat = send(listening, adt(), adt())
    assert msa(first) == ("AA", "C1001", "Encounter/e1 queued")
    assert msa(repeat)[0] == "AA"
    assert "recorded before" in msa(repeat)[2]
    (row,) = runtime.store.notifications(status="pending", limit=10)
    assert (row.encounter_id, row.day) == ("e1", "Patient/p1|2026-11-02")
    assert sent == [("notification", row.id)]
    assert all("identifier=V-77" in c.request.url for c in responses.calls)


@responses.activate
def test_the_sites_visit_identifier_system_is_searched(tmp_path: Path, runtime: Runtime) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "outlet.yaml").write_text("hl7v2:\n  visit_identifier_system: urn:oid:1.2.3\n")
    runtime.settings = runtime.base_settings = load_settings(
        {"THERACHARGE_CONFIG_DIR": str(site), "THERACHARGE_FHIR_BASE_URL": BASE}
    )
    encounters(builders.encounter())
    answer = hl7.parse(EventIntake(runtime)(adt()))
    assert msa(answer)[0] == "AA"
    assert "identifier=urn%3Aoid%3A1.2.3%7CV-77" in responses.calls[0].request.url


@responses.activate
def test_what_cannot_be_taken_is_refused_with_the_reason(
    listening: MllpListener, runtime: Runtime
) -> None:
    encounters()  # no Encounter has the visit number
    other, no_visit, unknown, garbage = send(
        listening,
        adt(kind="ORU^R01^ORU_R01"),
        adt(visit=""),
        adt(),
        "this is not HL7",
    )
    assert msa(other)[0] == "AR"
    assert "ORU^R01 is not an event TheraCharge takes (THERACHARGE_HL7_EVENTS)" in msa(other)[2]
    assert msa(no_visit)[0:1] == ("AR",)
    assert "PV1-19" in msa(no_visit)[2]
    assert msa(unknown) == ("AR", "C1001", "no Encounter has the visit number V-77")
    assert str(unknown.segment("ERR")[8]) == "no Encounter has the visit number V-77"
    assert msa(garbage)[0] == "AR"
    assert runtime.store.notifications(status="pending", limit=10) == []


@responses.activate
def test_an_ehr_that_cannot_be_asked_is_ae_so_the_engine_sends_it_again(
    listening: MllpListener, runtime: Runtime
) -> None:
    responses.get(f"{BASE}/Encounter", status=503)
    (answer,) = send(listening, adt())
    assert msa(answer)[0] == "AE"
    assert "the EHR could not be asked for the visit" in msa(answer)[2]
    assert runtime.store.notifications(status="pending", limit=10) == []


@responses.activate
def test_a_note_counts_once_it_is_signed(listening: MllpListener, runtime: Runtime) -> None:
    encounters(builders.encounter())
    draft, signed = send(listening, mdm("IP", "C3001"), mdm("AU", "C3002"))
    assert msa(draft)[0] == "AA"
    assert "not signed yet" in msa(draft)[2]
    assert msa(signed) == ("AA", "C3002", "Encounter/e1 queued")
    assert len(runtime.store.notifications(status="pending", limit=10)) == 1


@responses.activate
def test_a_connection_from_an_address_not_allowed_is_closed(runtime: Runtime) -> None:
    intake = EventIntake(runtime)
    listener = MllpListener("127.0.0.1", 0, intake, peers=("10.9.9.9",))
    listener.start()
    try:
        with MLLPClient("127.0.0.1", listener.port) as client:
            try:
                answered = client.send_message(adt())
            except ConnectionResetError:
                answered = b""
            assert answered == b""  # closed: no ACK
    finally:
        listener.stop()
    assert runtime.store.notifications(status="pending", limit=10) == []
