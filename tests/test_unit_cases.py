"""The unit rules against the table-driven cases in tests/cases/units.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.config.files import Settings
from plugin.rules.model import Discipline, Method, Service, TieBreak
from plugin.rules.units import decide_units
from tests.case_schema import UnitCaseSchema, load_cases

CASES = load_cases("units.yaml", UnitCaseSchema())


def _run(case: dict[str, Any], settings: Settings):  # type: ignore[no-untyped-def]
    services = [
        Service(
            code=s["code"],
            minutes=s["minutes"],
            discipline=Discipline(s["discipline"]) if s["discipline"] else None,
            date=s["date"],
            patient=s["patient"],
            provider=s["provider"],
        )
        for s in case["services"]
    ]
    tie_break = [TieBreak(t) for t in case["tie_break"]] if case["tie_break"] else None
    return decide_units(
        services,
        settings.catalog,
        settings.unit_parameters,
        on=case["date"],
        method=Method(case["method"]),
        tie_break=tie_break,
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict[str, Any], settings: Settings) -> None:
    result = _run(case, settings)
    expect = case["expect"]
    if "units" in expect:
        assert len(result.groups) == 1, case["name"]
        got = {line.code: line.units for line in result.groups[0].lines}
        assert got == expect["units"], case["name"]
    else:
        got_lines = sorted(
            (line.code, g.key.discipline.value, g.key.date, line.units)
            for g in result.groups
            for line in g.lines
        )
        want_lines = sorted(
            (
                w["code"],
                w["discipline"] or settings.catalog[w["code"]].disciplines[0].value,
                w["date"],
                w["units"],
            )
            for w in expect["lines"]
        )
        assert got_lines == want_lines, case["name"]
        for want in expect["lines"]:
            line = next(ln for g in result.groups for ln in g.lines if ln.code == want["code"])
            if want["minutes"] is not None:
                assert line.minutes == want["minutes"], case["name"]
            assert line.derived_from == want["derived_from"], case["name"]
    for total in ("total_timed_minutes", "total_treatment_minutes", "total_timed_units"):
        if total in expect:
            assert getattr(result, total) == expect[total], f"{case['name']}: {total}"
    if "alternatives" in expect:
        got_alts = [dict(a) for g in result.groups for a in g.alternatives]
        assert got_alts == expect["alternatives"], case["name"]
    text = " ".join(e.text for g in result.groups for e in g.explanation)
    for phrase in expect.get("explanation_mentions", []):
        assert phrase in text, f"{case['name']}: explanation lacks {phrase!r}"
    assert all(e.source for g in result.groups for e in g.explanation), case["name"]
