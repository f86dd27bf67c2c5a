"""CMS NCCI edits on a billing day: PTP pairs by their modifier indicator and date, MUE caps."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from plugin.config.files import Settings, load_ncci
from plugin.pipeline.billing_day import decide_gathered
from plugin.rules.decision import Decision
from plugin.schemas.errors import ConfigError
from tests import builders

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "ncci"


def day(settings: Settings, *procedures: dict[str, Any], **visit: Any) -> Decision:
    encounter = builders.encounter("e1", visit.pop("start", "2026-11-02T08:00:00-05:00"), 4)
    resources = builders.complete_record(*procedures, visit=encounter)
    if "payer" in visit:
        resources = [
            builders.coverage(payer_value=visit["payer"]) if r["resourceType"] == "Coverage" else r
            for r in resources
        ]
    return decide_gathered(settings, resources, "e1")


def line(decision: Decision, code: str) -> Any:
    (found,) = [ln for ln in decision.lines if ln.code == code and "mue-excess" not in ln.key]
    return found


def at(time: str, date: str = "2026-11-02") -> str:
    return f"{date}T{time}:00-05:00"


def test_a_pair_no_modifier_bypasses_denies_the_column_two_code(settings: Settings) -> None:
    decision = day(
        settings,
        builders.procedure("p1", "97140", at("08:10"), 15),
        builders.procedure("p2", "97124", at("08:30"), 15),
    )
    assert line(decision, "97140").status.value == "billable"
    denied = line(decision, "97124")
    assert denied.status.value == "not-billable"
    assert "NCCI PTP edit 97140/97124 (modifier indicator 0)" in denied.note
    assert any("97140/97124" in e.text for e in decision.explanation)


def test_distinct_intervals_put_the_payers_modifier_on_the_column_two_code(
    settings: Settings,
) -> None:
    decision = day(
        settings,
        builders.procedure("p1", "97530", at("08:10"), 15),
        builders.procedure("p2", "97537", at("08:25"), 15),  # starts as 97530 ends
    )
    assert line(decision, "97530").modifiers == ("GP",)
    assert line(decision, "97537").modifiers == ("GP", "XU")
    assert line(decision, "97537").status.value == "billable"


def test_a_payer_that_asks_for_59_gets_59(settings: Settings) -> None:
    payers = settings.payers
    medicare = next(p for p in payers.payers if p.id == "medicare-part-b")
    changed = dataclasses.replace(medicare, ptp_modifier="59")
    table = dataclasses.replace(
        payers, payers=tuple(changed if p is medicare else p for p in payers.payers)
    )
    decision = day(
        dataclasses.replace(settings, payers=table),
        builders.procedure("p1", "97530", at("08:10"), 15),
        builders.procedure("p2", "97537", at("08:40"), 15),
    )
    assert line(decision, "97537").modifiers == ("GP", "59")


def test_overlapping_or_missing_times_hold_the_column_two_code(settings: Settings) -> None:
    decision = day(
        settings,
        builders.procedure("p1", "97530", at("08:10"), 20),
        builders.procedure("p2", "97537", at("08:20"), 15),  # inside 97530's time
    )
    held = line(decision, "97537")
    assert held.status.value == "planned"
    assert "ncci-ptp-not-distinct" in {h.code for h in held.holds}
    assert "XU" not in held.modifiers


@pytest.mark.parametrize(
    ("date", "modifiers"),
    [("2019-12-31", ("GP", "XU")), ("2020-01-01", ("GP",)), ("2026-11-02", ("GP",))],
)
def test_a_pair_applies_only_while_it_is_in_force(
    settings: Settings, date: str, modifiers: tuple[str, ...]
) -> None:
    """97140/97530 (indicator 1) was deleted from the practitioner table after 2019-12-31."""
    decision = day(
        settings,
        builders.procedure("p1", "97140", at("08:10", date), 15),
        builders.procedure("p2", "97530", at("08:30", date), 15),
        start=at("08:00", date),
    )
    assert line(decision, "97530").modifiers == modifiers


def test_units_over_an_mue_are_held_on_a_line_of_their_own(settings: Settings) -> None:
    """97112 has an MUE of 4 a day: 75 minutes earn 5 units; 4 are billed, 1 is held."""
    decision = day(settings, builders.procedure("p1", "97112", at("08:10"), 75))
    kept = line(decision, "97112")
    (excess,) = [ln for ln in decision.lines if ln.key.endswith("/mue-excess")]
    assert (kept.units, kept.status.value) == (4, "billable")
    assert (excess.units, excess.status.value, excess.code) == (1, "planned", "97112")
    assert [h.code for h in excess.holds] == ["mue-exceeded"]
    assert "MAI" in excess.holds[0].message


def test_a_code_whose_mue_is_zero_is_not_billable_for_medicare(settings: Settings) -> None:
    decision = day(
        settings,
        builders.procedure("p1", "97110", at("08:10"), 20),
        builders.procedure("p2", "97010", at("08:35"), 10),
    )
    packs = line(decision, "97010")
    assert packs.status.value == "not-billable"
    assert "medically unlikely edit of 0 units" in packs.note
    assert line(decision, "97110").status.value == "billable"


def test_a_payer_without_the_ncci_edits_bills_both_codes(settings: Settings) -> None:
    decision = day(
        settings,
        builders.procedure("p1", "97140", at("08:10"), 15),
        builders.procedure("p2", "97124", at("08:30"), 15),
        payer="COMM-AMA",
    )
    assert {ln.code: ln.status.value for ln in decision.lines} == {
        "97140": "billable",
        "97124": "billable",
    }


def test_the_shipped_tables_load_and_keep_their_history() -> None:
    tables = load_ncci(SHIPPED / "ptp_practitioner.csv", SHIPPED / "mue_practitioner.csv")
    from datetime import date

    assert tables.pair("97140", "97124", date(2026, 11, 2)).indicator == 0  # type: ignore[union-attr]
    assert tables.pair("97140", "97530", date(2026, 11, 2)) is None  # deleted 2019-12-31
    assert tables.mue_of("97110", date(2026, 11, 2)).units == 6  # type: ignore[union-attr]
    assert tables.mue_of("97010", date(2026, 11, 2)).units == 0  # type: ignore[union-attr]


def test_a_bad_row_names_the_file_the_line_and_the_column(tmp_path: Path) -> None:
    ptp = tmp_path / "ptp.csv"
    ptp.write_text(
        "column1,column2,effective,deletion,modifier_indicator,source\n"
        "97140,97124,,*,0,x\n"
        "97140,97530,2000-07-01,2019-12-31,7,x\n"
    )
    with pytest.raises(ConfigError, match=r"ptp.csv: line 3: modifier_indicator: '7'"):
        load_ncci(ptp, SHIPPED / "mue_practitioner.csv")
