"""Properties of the unit rules that must hold for every input (hypothesis)."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from plugin.config.files import load_settings
from plugin.rules.model import Method, Service
from plugin.rules.units import decide_units, units_for_minutes

SETTINGS = load_settings({})
TABLE = SETTINGS.unit_parameters.unit_table.at(__import__("datetime").date(2026, 1, 1)).value
ON = date(2026, 11, 2)  # the rules in force on this date of service
TIMED = ["97110", "97112", "97116", "97140", "97530", "97035", "97032", "97750"]

visits = st.lists(
    st.tuples(st.sampled_from(TIMED), st.integers(min_value=0, max_value=140)),
    min_size=1,
    max_size=8,
)


def _decide(pairs: list[tuple[str, int]], method: Method):  # type: ignore[no-untyped-def]
    services = [Service(code, minutes) for code, minutes in pairs]
    return decide_units(services, SETTINGS.catalog, SETTINGS.unit_parameters, on=ON, method=method)


def _minutes_by_code(pairs: list[tuple[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for code, minutes in pairs:
        totals[code] = totals.get(code, 0) + minutes
    return totals


@given(visits)
@hyp_settings(max_examples=400)
def test_cms_total_units_equal_the_table_value_of_total_timed_minutes(
    pairs: list[tuple[str, int]],
) -> None:
    result = _decide(pairs, Method.CMS)
    total = sum(m for _, m in pairs)
    assert result.total_timed_minutes == total
    assert sum(line.units for g in result.groups for line in g.lines) == units_for_minutes(
        total, TABLE
    )


@given(visits)
@hyp_settings(max_examples=400)
def test_cms_never_gives_a_code_fewer_than_its_whole_15_minute_blocks_nor_more_than_one_extra(
    pairs: list[tuple[str, int]],
) -> None:
    result = _decide(pairs, Method.CMS)
    minutes = _minutes_by_code(pairs)
    for line in result.groups[0].lines:
        assert minutes[line.code] // 15 <= line.units <= minutes[line.code] // 15 + 1


@given(visits)
@hyp_settings(max_examples=200)
def test_cms_alternatives_bill_the_same_total_and_keep_whole_blocks(
    pairs: list[tuple[str, int]],
) -> None:
    result = _decide(pairs, Method.CMS)
    minutes = _minutes_by_code(pairs)
    group = result.groups[0]
    chosen = {line.code: line.units for line in group.lines}
    for alternative in group.alternatives:
        assert alternative != chosen
        assert sum(alternative.values()) == sum(chosen.values())
        assert all(units >= minutes[code] // 15 for code, units in alternative.items())


@given(visits, st.sampled_from(TIMED), st.integers(min_value=0, max_value=140))
@hyp_settings(max_examples=300)
def test_ama_units_of_a_code_never_depend_on_other_codes(
    others: list[tuple[str, int]], code: str, minutes: int
) -> None:
    others = [(c, m) for c, m in others if c != code]
    alone = _decide([(code, minutes)], Method.AMA)
    together = _decide([(code, minutes), *others], Method.AMA)
    units_alone = {ln.code: ln.units for ln in alone.groups[0].lines}[code]
    units_together = {ln.code: ln.units for g in together.groups for ln in g.lines}[code]
    assert units_alone == units_together == units_for_minutes(minutes, TABLE)


@given(visits)
@hyp_settings(max_examples=200)
def test_the_decision_is_the_same_whatever_runs_it_twice(pairs: list[tuple[str, int]]) -> None:
    assert _decide(pairs, Method.CMS) == _decide(pairs, Method.CMS)
