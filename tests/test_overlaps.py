"""Overlapping time is found for each service, however many services a day holds.

A day where every service overlaps every other must not produce n² findings (nor take n² time):
a service is named with each of its overlaps up to three; past that one finding counts them.
Checked against the plain pairwise definition on random days.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.config.files import load_settings
from plugin.pipeline.billing_day import decide_gathered
from plugin.rules.gaps import OVERLAPS_NAMED
from tests import builders

SETTINGS = load_settings({})
DAY = datetime.fromisoformat("2026-11-02T08:00:00-05:00")


def _decide(spans: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    procedures = [
        builders.procedure(f"p{i}", "97110", (DAY + timedelta(minutes=start)).isoformat(), length)
        for i, (start, length) in enumerate(spans)
    ]
    return decide_gathered(
        SETTINGS, builders.complete_record(*procedures, visit=builders.encounter(hours=12)), "e1"
    )


def _pairwise(spans: list[tuple[int, int]]) -> dict[int, set[int]]:
    """The definition: two services overlap when they share at least one whole minute."""
    found: dict[int, set[int]] = {i: set() for i in range(len(spans))}
    for i, (a, la) in enumerate(spans):
        for j, (b, lb) in enumerate(spans):
            if i != j and min(a + la, b + lb) - max(a, b) >= 1:
                found[i].add(j)
    return found


def _reported(decision) -> dict[int, list[str]]:  # type: ignore[no-untyped-def]
    out: dict[int, list[str]] = {}
    for finding in decision.findings:
        if finding.code == "time-overlap":
            out.setdefault(int(finding.resource.removeprefix("Procedure/p")), []).append(
                finding.message
            )
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 90), st.integers(1, 40)), min_size=1, max_size=12))
def test_overlaps_agree_with_the_pairwise_definition(spans: list[tuple[int, int]]) -> None:
    expected = _pairwise(spans)
    reported = _reported(_decide(spans))
    for i, partners in expected.items():
        messages = reported.get(i, [])
        if not partners:
            assert messages == []
        elif len(partners) <= OVERLAPS_NAMED:
            named = {int(m) for text in messages for m in re.findall(r"Procedure/p(\d+)", text)}
            assert named == partners
            assert len(messages) == len(partners)
        else:
            (message,) = messages
            assert f"overlaps {len(partners)} other services" in message
            named = {int(m) for m in re.findall(r"Procedure/p(\d+)", message)}
            assert len(named) == OVERLAPS_NAMED
            assert named <= partners


def test_a_day_where_everything_overlaps_gives_one_finding_per_service() -> None:
    decision = _decide([(0, 20)] * 150)
    overlaps = [f for f in decision.findings if f.code == "time-overlap"]
    assert len(overlaps) == 150
    assert "overlaps 149 other services" in overlaps[0].message


def test_a_service_on_the_calendars_first_day_is_searched_without_overflow() -> None:
    """A period starting at 0001-01-01 (a hostile or mistyped date) is looked up from the
    performer's first service, not by a subtraction that leaves the calendar."""
    from fhir_mappings.assemble import _PerformerServices
    from plugin.rules.history import OtherService

    first = datetime(1, 1, 1, tzinfo=UTC)
    services = _PerformerServices(
        [
            OtherService("Procedure/a", "Patient/2", "Practitioner/1", "97110", first,
                         first + timedelta(minutes=30)),
            OtherService("Procedure/b", "Patient/3", "Practitioner/1", "97110",
                         first + timedelta(hours=2), first + timedelta(hours=3)),
        ]
    )  # fmt: skip
    found = services.overlapping(first, first + timedelta(minutes=10))
    assert [s.reference for s in found] == ["Procedure/a"]
