"""What gets written: creates, version-checked updates, entered-in-error, billed left alone."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from fhir_mappings.assemble import VisitAssembler
from fhir_mappings.delivery import of_the_day, our_charge_items, plan_writes
from plugin.config.files import Settings
from plugin.pipeline import stages
from plugin.pipeline.stages import render_context, translate_tables
from plugin.rules.decision import Decision
from tests import builders

SERVER = "https://ehr.example.org/fhir"
DAY = "Patient/p1/2026-11-02/PT/Organization/clinic"
WHEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))


def decide(settings: Settings, *procedures: dict[str, Any]) -> Decision:
    assembler = VisitAssembler(translate_tables(settings))
    for resource in builders.complete_record(*procedures):
        assembler.add(resource)
    (visit,) = list(assembler.visits())
    return stages.decide(settings, (visit,))


def stored(
    decision: Decision, settings: Settings, status: str | None = None
) -> list[dict[str, Any]]:
    """The ChargeItems an earlier run left on the server (with ids and versions)."""
    first = plan_writes(decision, {}, render_context(settings, WHEN), SERVER)
    items = []
    for n, entry in enumerate(
        e for e in first.entries if e["resource"]["resourceType"] == "ChargeItem"
    ):
        item = copy.deepcopy(entry["resource"])
        item.update(id=f"ci{n}", meta={"versionId": "3"})
        if status:
            item["status"] = status
        items.append(item)
    return items


@pytest.fixture
def two_lines(settings: Settings) -> Decision:
    return decide(
        settings,
        builders.procedure("p1", "97110", minutes=33),
        builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
    )


def test_new_lines_are_created_only_if_absent(two_lines: Decision, settings: Settings) -> None:
    plan = plan_writes(two_lines, {}, render_context(settings, WHEN), SERVER)
    creates = [e for e in plan.entries if e["request"]["method"] == "POST"]
    assert [e["request"]["ifNoneExist"] for e in creates] == [
        f"identifier={settings.extension_base}/NamingSystem/charge-line|{DAY}/97110",
        f"identifier={settings.extension_base}/NamingSystem/charge-line|{DAY}/97140",
    ]
    assert plan.created == [f"{DAY}/97110", f"{DAY}/97140"]
    (prov,) = [e for e in plan.entries if e["resource"]["resourceType"] == "Provenance"]
    assert [t["reference"] for t in prov["resource"]["target"]] == [e["fullUrl"] for e in creates]


def test_a_rerun_with_nothing_changed_writes_nothing(
    two_lines: Decision, settings: Settings
) -> None:
    existing = our_charge_items(
        stored(two_lines, settings), f"{settings.extension_base}/NamingSystem/charge-line"
    )
    later = render_context(
        settings, WHEN + timedelta(days=1)
    )  # a later run: only enteredDate differs
    plan = plan_writes(two_lines, existing, later, SERVER)
    assert plan.entries == []
    assert plan.bundle is None
    assert len(plan.unchanged) == 2


def test_a_changed_line_is_updated_against_the_version_read(
    settings: Settings, two_lines: Decision
) -> None:
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    existing = our_charge_items(stored(two_lines, settings), system)
    longer = decide(
        settings,
        builders.procedure("p1", "97110", minutes=35),
        builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
    )
    plan = plan_writes(longer, existing, render_context(settings, WHEN), SERVER)
    assert plan.updated == [f"{DAY}/97110"]
    assert plan.unchanged == [f"{DAY}/97140"]
    (update,) = [e for e in plan.entries if e["resource"]["resourceType"] == "ChargeItem"]
    assert update["request"] == {"method": "PUT", "url": "ChargeItem/ci0", "ifMatch": 'W/"3"'}
    assert update["fullUrl"] == f"{SERVER}/ChargeItem/ci0"
    assert update["resource"]["id"] == "ci0"


def test_a_vanished_line_is_set_entered_in_error(settings: Settings, two_lines: Decision) -> None:
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    existing = our_charge_items(stored(two_lines, settings), system)
    fewer = decide(settings, builders.procedure("p1", "97110", minutes=33))
    plan = plan_writes(fewer, existing, render_context(settings, WHEN), SERVER)
    assert plan.voided == [f"{DAY}/97140"]
    (void,) = [e for e in plan.entries if e["request"].get("url") == "ChargeItem/ci1"]
    assert void["resource"]["status"] == "entered-in-error"
    assert void["request"]["ifMatch"] == 'W/"3"'


def test_a_billed_charge_item_is_never_changed_and_a_correction_is_reported(
    settings: Settings, two_lines: Decision
) -> None:
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    existing = our_charge_items(stored(two_lines, settings, status="billed"), system)
    changed = decide(settings, builders.procedure("p1", "97110", minutes=40))
    plan = plan_writes(changed, existing, render_context(settings, WHEN), SERVER)
    assert plan.entries == []
    assert plan.corrections == [
        f"{DAY}/97110: ChargeItem/ci0 is billed and now differs",
        f"{DAY}/97140: ChargeItem/ci1 is billed but no longer decided",
    ]


def test_charge_items_of_others_are_not_ours(settings: Settings, two_lines: Decision) -> None:
    theirs = stored(two_lines, settings)
    for item in theirs:
        item["identifier"] = [
            {"system": "https://other.example/charges", "value": item["identifier"][0]["value"]}
        ]
    assert our_charge_items(theirs, f"{settings.extension_base}/NamingSystem/charge-line") == {}


def per_encounter(items: list[dict[str, Any]], status: str | None = None) -> list[dict[str, Any]]:
    """The same ChargeItems as a release before the billing day wrote them: identifier
    `{encounter id}/{date}/{discipline}/{code}`, context the encounter."""
    old = copy.deepcopy(items)
    for item in old:
        code = item["code"]["coding"][0]["code"]
        item["identifier"][0]["value"] = f"e1/2026-11-02/PT/{code}"
        if status:
            item["status"] = status
    return old


def test_per_encounter_charge_items_are_taken_over_by_the_day_lines_in_one_transaction(
    settings: Settings, two_lines: Decision
) -> None:
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    existing = our_charge_items(per_encounter(stored(two_lines, settings)), system)
    plan = plan_writes(two_lines, existing, render_context(settings, WHEN), SERVER)
    assert plan.created == [f"{DAY}/97110", f"{DAY}/97140"]
    assert plan.voided == ["e1/2026-11-02/PT/97110", "e1/2026-11-02/PT/97140"]
    voids = [
        e for e in plan.entries if e["request"]["method"] == "PUT" and "ifMatch" in e["request"]
    ]
    assert [v["resource"]["status"] for v in voids] == ["entered-in-error"] * 2
    assert plan.bundle is not None
    assert len(plan.bundle["entry"]) == 5  # 2 creates, 2 voids, 1 Provenance


def test_a_billed_per_encounter_line_is_not_billed_again_under_the_day(
    settings: Settings, two_lines: Decision
) -> None:
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    existing = our_charge_items(per_encounter(stored(two_lines, settings), "billed"), system)
    same = plan_writes(two_lines, existing, render_context(settings, WHEN), SERVER)
    assert (same.entries, same.created, same.corrections) == ([], [], [])
    more = decide(
        settings,
        builders.procedure("p1", "97110", minutes=40),
        builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
    )
    plan = plan_writes(more, existing, render_context(settings, WHEN), SERVER)
    assert plan.created == []
    assert plan.corrections == [
        f"{DAY}/97110: ChargeItem/ci0 billed per encounter with 2 unit(s); the day now comes to 3",
        f"{DAY}/97140: ChargeItem/ci1 billed per encounter with 1 unit(s); the day now comes to 0",
    ]


def test_charge_items_of_the_days_around_are_left_alone(
    settings: Settings, two_lines: Decision
) -> None:
    """The day's search spans the day before and after (a server may compare in UTC): their
    ChargeItems come back with it, and must be neither updated nor set entered-in-error."""
    system = f"{settings.extension_base}/NamingSystem/charge-line"
    items = stored(two_lines, settings)
    tomorrow = copy.deepcopy(items[0])
    tomorrow["id"] = "ci-next"
    tomorrow["identifier"][0]["value"] = "Patient/p1/2026-11-03/PT/Organization/clinic/97110"
    existing = of_the_day(our_charge_items([*items, tomorrow], system), two_lines)
    assert sorted(existing) == [f"{DAY}/97110", f"{DAY}/97140"]
    plan = plan_writes(two_lines, existing, render_context(settings, WHEN), SERVER)
    assert (plan.entries, plan.voided) == ([], [])
