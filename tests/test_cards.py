"""Gaps and charges as CDS Hooks 2.0 cards: the spec's shape, one line each, the right links."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline import stages
from plugin.pipeline.stages import translate_tables
from plugin.render.cards import SUMMARY_LIMIT, gap_cards, summary_card
from plugin.rules.decision import Decision
from tests import builders

SPEC = Path(__file__).resolve().parent / "fixtures" / "spec" / "cds-hooks"
OVERRIDES = "https://theracharge.example/fhir/CodeSystem/override-reason"


def decide(settings: Settings, resources: list[dict[str, Any]]) -> Decision:
    assembler = VisitAssembler(translate_tables(settings))
    for resource in resources:
        assembler.add(resource)
    (visit,) = list(assembler.visits())
    return stages.decide(settings, (visit,))


def messy(settings: Settings) -> Decision:
    """A held 97110 (no time), a warned goal link on two services, a clean 97140."""
    no_time = builders.procedure("p1", "97110", minutes=None)
    manual = builders.procedure("p2", "97140", "2026-11-02T10:00:00-05:00", 20)
    gait = builders.procedure("p3", "97116", "2026-11-02T10:30:00-05:00", 10)
    resources = builders.complete_record(no_time, manual, gait)
    return decide(settings, [r for r in resources if r["resourceType"] != "Goal"])


def assert_spec_card(card: dict[str, Any]) -> None:
    """The required fields and enumerations of a CDS Hooks 2.0 card."""
    assert isinstance(card["summary"], str)
    assert 0 < len(card["summary"]) < SUMMARY_LIMIT
    assert card["indicator"] in {"info", "warning", "critical"}
    assert card["source"]["label"]
    for reason in card.get("overrideReasons", []):
        assert set(reason) == {"system", "code", "display"}
    json.dumps(card)  # plain JSON


def test_the_spec_example_cards_pass_our_shape_check() -> None:
    for card in json.loads((SPEC / "response-cards.json").read_text())["cards"]:
        assert_spec_card(card)


def test_a_held_line_gets_one_warning_card_with_its_fix_and_source(settings: Settings) -> None:
    cards = gap_cards(messy(settings), OVERRIDES)
    held = [c for c in cards if c["summary"].startswith("97110 held")]
    assert len(held) == 1
    (card,) = held
    assert_spec_card(card)
    assert card["indicator"] == "warning"
    assert "time-missing" in card["detail"]
    assert "Procedure/p1" in card["detail"]
    assert card["source"]["url"].endswith("bp102c15.pdf")  # Pub 100-02 ch.15
    assert "overrideReasons" not in card  # a hold is fixed in the record, not overridden


def test_warnings_of_one_kind_share_a_card_that_may_be_overridden(settings: Settings) -> None:
    cards = gap_cards(messy(settings), OVERRIDES)
    goal = [c for c in cards if "goal" in c["summary"]]
    assert len(goal) == 1
    (card,) = goal
    assert_spec_card(card)
    assert card["summary"].startswith("3× ")
    assert [r["code"] for r in card["overrideReasons"]] == [
        "documented-elsewhere",
        "not-required",
        "will-correct",
    ]
    assert {r["system"] for r in card["overrideReasons"]} == {OVERRIDES}


def test_a_clean_visit_gets_no_gap_cards_and_a_summary(settings: Settings) -> None:
    decision = decide(
        settings,
        builders.complete_record(
            builders.procedure("p1", "97110", minutes=33),
            builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
        ),
    )
    assert gap_cards(decision, OVERRIDES) == []
    card = summary_card(decision)
    assert_spec_card(card)
    assert card["summary"] == "Charges (CMS): 97110-GP ×2, 97140-GP ×1"


def test_card_ids_are_stable_for_feedback(settings: Settings) -> None:
    first = [c["uuid"] for c in gap_cards(messy(settings), OVERRIDES)]
    second = [c["uuid"] for c in gap_cards(messy(settings), OVERRIDES)]
    assert first == second
    assert len(set(first)) == len(first)


def test_a_long_message_is_cut_under_the_limit(settings: Settings) -> None:
    resource = builders.procedure("p" * 60, "97110", minutes=None)
    resources = builders.complete_record(resource)
    cards = gap_cards(decide(settings, resources), OVERRIDES)
    assert all(len(c["summary"]) < SUMMARY_LIMIT for c in cards)
