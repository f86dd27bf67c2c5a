"""An assistant's service names the therapist who supervised it on the ChargeItem, found on the
encounter's participants or in roles.yaml `supervisors`; without one the line is held."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from fhir_mappings.chargeitem import charge_item
from plugin.config.files import Settings
from plugin.pipeline.billing_day import decide_gathered
from plugin.pipeline.stages import render_context
from tests import builders

WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
PTA = "225200000X"


def _record(**encounter: Any) -> list[dict[str, Any]]:
    service = builders.procedure("p1", "97110", minutes=30, role=PTA)
    service["performer"][0]["actor"]["reference"] = "Practitioner/pta1"
    return builders.complete_record(service, visit=builders.encounter("e1", **encounter))


def _supervisors(settings: Settings, record: list[dict[str, Any]]) -> tuple[str, list[str]]:
    decision = decide_gathered(settings, record, "e1")
    (line,) = decision.lines
    item = charge_item(line, decision, render_context(settings, WHEN))
    named = [
        p["actor"]["reference"]
        for p in item["performer"]
        if p.get("function", {}).get("coding", [{}])[0].get("code") == "supervising"
    ]
    return line.status.value, named


def test_the_encounters_participant_therapist_is_named_as_supervisor(settings: Settings) -> None:
    participant = {
        "type": [{"coding": [{"system": builders.NUCC, "code": "225100000X"}]}],
        "individual": {"reference": "Practitioner/pt7"},
    }
    assert _supervisors(settings, _record(participant=[participant])) == (
        "billable",
        ["Practitioner/pt7"],
    )


def test_a_participant_of_another_discipline_does_not_supervise_a_pta(settings: Settings) -> None:
    participant = {
        "type": [{"coding": [{"system": builders.NUCC, "code": "225X00000X"}]}],  # an OT
        "individual": {"reference": "Practitioner/ot1"},
    }
    assert _supervisors(settings, _record(participant=[participant])) == ("planned", [])


def test_the_assistants_configured_supervisor_is_named(settings: Settings) -> None:
    tables = dataclasses.replace(
        settings.coding_tables, supervisors={"Practitioner/pta1": "Practitioner/pt9"}
    )
    configured = dataclasses.replace(settings, coding_tables=tables)
    assert _supervisors(configured, _record()) == ("billable", ["Practitioner/pt9"])


def test_without_any_supervisor_the_line_is_held(settings: Settings) -> None:
    decision = decide_gathered(settings, _record(), "e1")
    (line,) = decision.lines
    assert [h.code for h in line.holds] == ["supervision-missing"]


def test_a_supervisor_who_also_treated_is_named_as_supervisor_on_the_co_line(
    settings: Settings,
) -> None:
    """The OT who treated part of the minutes and supervised the OTA's: the CO line names the
    OT with the supervising function, as a CQ line names the PT (issue 32)."""
    ot, ota = "225X00000X", "224Z00000X"
    own = builders.procedure("p1", "97530", "2026-11-02T09:00:00-05:00", 15, role=ot)
    own["performer"][0]["actor"]["reference"] = "Practitioner/ot1"
    assisted = builders.procedure("p2", "97530", "2026-11-02T09:15:00-05:00", 15, role=ota)
    assisted["performer"][0]["actor"]["reference"] = "Practitioner/ota1"
    participant = {
        "type": [{"coding": [{"system": builders.NUCC, "code": ot}]}],
        "individual": {"reference": "Practitioner/ot1"},
    }
    record = builders.complete_record(
        own, assisted, visit=builders.encounter("e1", participant=[participant])
    )
    decision = decide_gathered(settings, record, "e1")
    co = next(ln for ln in decision.lines if "CO" in ln.modifiers)
    item = charge_item(co, decision, render_context(settings, WHEN))
    functions = {
        (p["actor"]["reference"], p.get("function", {}).get("coding", [{}])[0].get("code"))
        for p in item["performer"]
    }
    assert ("Practitioner/ot1", "supervising") in functions
    assert ("Practitioner/ota1", ota) in functions
