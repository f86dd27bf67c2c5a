"""ChargeItems, Provenance and the transaction Bundle: valid R4, right statuses and code systems."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.provenance import Provenance

from fhir_mappings.assemble import VisitAssembler
from fhir_mappings.chargeitem import CPT, HCPCS, charge_item, name_uuid, transaction_entries
from plugin.config.files import Settings
from plugin.pipeline import stages
from plugin.pipeline.stages import render_context, translate_tables
from plugin.rules.decision import Decision
from plugin.rules.lines import LineStatus
from tests.builders import complete_record, procedure

SHARED = Path(__file__).resolve().parent / "fixtures" / "spec"
FROZEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-7)))
R4_CHARGEITEM_STATUSES = {
    "planned",
    "billable",
    "not-billable",
    "aborted",
    "billed",
    "entered-in-error",
    "unknown",
}


def decide(settings: Settings, *procedures: dict) -> Decision:
    assembler = VisitAssembler(translate_tables(settings))
    for resource in complete_record(*procedures):
        assembler.add(resource)
    (visit,) = list(assembler.visits())
    return stages.decide(settings, (visit,))


@pytest.fixture
def mixed(settings: Settings) -> Decision:
    """Every line shape: billable timed and untimed, not-billable, held, an add-on split off."""
    return decide(
        settings,
        procedure("p1", "97110", minutes=33),
        procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
        procedure("p3", "97035", "2026-11-02T09:50:00-05:00", 5),
        procedure("p4", "97161", "2026-11-02T08:20:00-05:00", 30),
        procedure("p5", "97129", "2026-11-02T10:00:00-05:00", 40, role="235Z00000X"),
        procedure("p6", "97112", start=None, minutes=None),
        procedure("p7", "97535", "2026-11-02T11:00:00-05:00", 20, role="225X00000X"),
        procedure("p8", "97530", "2026-11-02T11:20:00-05:00", 5, role="225X00000X"),
    )


def test_every_charge_item_shape_round_trips_through_the_r4b_model(
    mixed: Decision, settings: Settings
) -> None:
    ctx = render_context(settings, FROZEN)
    statuses = set()
    for line in mixed.lines:
        item = charge_item(line, mixed, ctx)
        model = ChargeItem.model_validate(item)
        assert json.loads(model.model_dump_json(exclude_none=True)) == item
        statuses.add(item["status"])
    assert statuses == {"billable", "not-billable", "planned"}


def test_statuses_and_code_systems_are_checked_by_us_not_the_model(
    mixed: Decision, settings: Settings
) -> None:
    ctx = render_context(settings, FROZEN)
    for line in mixed.lines:
        item = charge_item(line, mixed, ctx)
        assert item["status"] in R4_CHARGEITEM_STATUSES
        (coding,) = item["code"]["coding"]
        assert coding["system"] == (HCPCS if coding["code"].startswith("G") else CPT)
        assert coding["code"] in settings.catalog
        for ext in item["extension"]:
            if ext["url"].endswith("charge-modifier"):
                assert ext["valueCodeableConcept"]["coding"][0]["system"] == HCPCS
        assert item["identifier"][0]["value"] == line.key


def test_line_statuses_follow_the_decision(mixed: Decision) -> None:
    by_code = {line.code: line for line in mixed.lines}
    assert by_code["97110"].status is LineStatus.PLANNED  # 97112's missing time holds the pool
    assert by_code["97140"].status is LineStatus.PLANNED
    assert by_code["97161"].status is LineStatus.BILLABLE  # untimed: not part of the pool
    assert by_code["97535"].status is LineStatus.BILLABLE  # OT: a pool of its own
    assert by_code["97530"].status is LineStatus.NOT_BILLABLE
    assert by_code["97129"].status is LineStatus.BILLABLE  # SLP: a group of its own
    assert by_code["97130"].derived_from == "97129"
    assert by_code["97130"].units == 2
    planned = by_code["97112"]
    assert [h.code for h in planned.holds] == ["time-missing"]
    assert "Held for documentation" in planned.note


def test_a_documented_service_that_earns_nothing_is_not_billable_with_the_reason(
    settings: Settings,
) -> None:
    decision = decide(
        settings,
        procedure("p1", "97110", minutes=33),
        procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
        procedure("p3", "97035", "2026-11-02T09:50:00-05:00", 5),
    )
    item = {line.code: line for line in decision.lines}["97035"]
    assert (item.status, item.units) == (LineStatus.NOT_BILLABLE, 0)
    assert "5 documented minutes of 97035 earn no unit" in item.note


def test_each_therapy_line_carries_its_plan_of_care_modifier(mixed: Decision) -> None:
    modifiers = {line.code: line.modifiers for line in mixed.lines}
    assert modifiers["97110"] == ("GP",)
    assert modifiers["97129"] == ("GN",)
    assert modifiers["97112"] == ("GP",)
    assert modifiers["97535"] == ("GO",)
    assert modifiers["97530"] == ("GO",)  # 97530 is PT or OT: performed by an OT


def test_the_transaction_upserts_by_identifier_and_is_valid_r4(
    mixed: Decision, settings: Settings
) -> None:
    entries = transaction_entries(mixed, render_context(settings, FROZEN))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    Bundle.model_validate(bundle)
    items = [e for e in entries if e["resource"]["resourceType"] == "ChargeItem"]
    assert len(items) == len(mixed.lines)
    for entry in items:
        assert entry["request"]["method"] == "PUT"
        system, value = unquote(entry["request"]["url"].split("identifier=", 1)[1]).split("|", 1)
        assert entry["resource"]["identifier"] == [{"system": system, "value": value}]
    (prov,) = [e for e in entries if e["resource"]["resourceType"] == "Provenance"]
    Provenance.model_validate(prov["resource"])
    assert {t["reference"] for t in prov["resource"]["target"]} == {e["fullUrl"] for e in items}
    assert prov["request"] == {"method": "PUT", "url": f"Provenance/{prov['resource']['id']}"}


def test_rendering_twice_gives_the_same_bundle(mixed: Decision, settings: Settings) -> None:
    ctx = render_context(settings, FROZEN)
    assert transaction_entries(mixed, ctx) == transaction_entries(mixed, ctx)


def test_a_visit_without_billable_procedures_writes_nothing(settings: Settings) -> None:
    decision = decide(settings, procedure("p1", status="not-done"))
    assert decision.lines == ()
    assert transaction_entries(decision, render_context(settings, FROZEN)) == []


def test_the_official_r4_chargeitem_example_parses_with_our_models() -> None:
    example = json.loads((SHARED / "fhir-r4" / "chargeitem-example.json").read_text())
    model = ChargeItem.model_validate(example)
    assert model.status == "billable"
    assert model.occurrencePeriod is not None


def test_the_run_summary_speaks_billing_staffs_words(settings: Settings) -> None:
    """Held rather than planned; no code with nothing to bill; 1 unit; holds apart from
    warnings (issue 17's summary)."""
    from plugin.pipeline.billing_day import decide_gathered
    from plugin.render.report import RunSummary, summary_text
    from tests import builders

    summary = RunSummary()
    clean = builders.complete_record(
        builders.procedure("p1", "97110", minutes=30),
        builders.procedure("p2", "97530", "2026-11-02T09:30:00-05:00", 5),  # earns no unit
    )
    summary.add(decide_gathered(settings, clean, "e1"))
    held = builders.complete_record(builders.procedure("p1", "97140", minutes=None))
    summary.add(decide_gathered(settings, held, "e1"))
    text = summary_text(summary)
    assert "charge lines: 1 billable, 1 held, 1 not billable" in text
    assert "billable units by code: 97110 2 units; held: none" in text
    assert "97530" not in text.split("billable units by code:")[1].split("\n")[0]
    assert (
        "held lines by reason (a line held for two reasons counts under each): time-missing (1)"
        in text
    )
    assert "lines billed with warnings, by kind: " in text
    assert "planned" not in text


def test_a_name_based_uuid_is_the_standard_librarys_uuid5() -> None:
    for name in ("", "Encounter/e1|summary", "Encounter/ü-7|held|time-missing", "x" * 500):
        for namespace in (uuid.NAMESPACE_URL, uuid.UUID("8a4d6c2e-52f7-4f1c-9a40-0d3e7b6f1c55")):
            assert name_uuid(namespace, name) == str(uuid.uuid5(namespace, name))
