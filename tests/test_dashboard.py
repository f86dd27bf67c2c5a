"""The billing manager's figures from the run ledger (plugin.render.dashboard)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from plugin.render.charts import bars, stacked_columns
from plugin.render.dashboard import dashboard

T0 = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
A = "Patient/a|2026-11-02"


@dataclass
class Run:
    at: datetime
    encounter_id: str
    day: str | None
    lines: list[Any] = field(default_factory=list)


def line(code: str, status: str, units: int, minutes: int, date: str = "2026-11-02",
         holds: tuple[str, ...] = (), who: str = "Sam Rivera") -> dict[str, Any]:  # fmt: skip
    return {
        "code": code, "status": status, "units": units, "minutes": minutes, "date": date,
        "holds": list(holds), "therapists": [{"name": who, "credential": "DPT"}],
    }  # fmt: skip


def test_counts_come_from_each_days_latest_decision_and_holds_say_how_fast_they_were_fixed() -> (
    None
):
    runs = [
        # day A: held for time-missing, fixed 26 hours later
        Run(T0, "a", A, [line("97110", "planned", 2, 30, holds=("time-missing",))]),
        Run(T0 + timedelta(hours=26), "a", A, [line("97110", "billable", 2, 30)]),
        # day B: held for time-missing and body-site-missing, the second fixed after 2 hours
        Run(T0, "b", "Patient/b|2026-11-03",
            [line("97112", "planned", 1, 20, "2026-11-03", ("time-missing", "body-site-missing"))]),
        Run(T0 + timedelta(hours=2), "b", "Patient/b|2026-11-03",
            [line("97112", "planned", 1, 20, "2026-11-03", ("time-missing",))]),
        # day C: billed at 10 minutes per unit by another therapist
        Run(T0, "c", "Patient/c|2026-11-03",
            [line("97140", "billable", 2, 20, "2026-11-03", who="Lee Park")]),
        # outside the period: not counted
        Run(T0, "d", "Patient/d|2026-12-01", [line("97110", "billable", 4, 60, "2026-12-01")]),
    ]  # fmt: skip
    figures = dashboard(runs, "2026-11-01", "2026-11-30")
    assert figures.by_date == [
        ("2026-11-02", {"billable": 1}),
        ("2026-11-03", {"planned": 1, "billable": 1}),
    ]
    assert figures.totals == {"billable": 2, "planned": 1}
    holds = {h.code: (h.seen, h.fixed, h.median_hours) for h in figures.holds}
    assert holds == {"time-missing": (2, 1, 26.0), "body-site-missing": (1, 1, 2.0)}
    assert figures.units_by_code == [("97110", 2), ("97140", 2)]
    assert figures.minutes_per_unit == [
        ("Lee Park, DPT", 10.0, 20, 2),
        ("Sam Rivera, DPT", 15.0, 30, 2),
    ]


def test_the_charts_are_svg_with_a_title_and_flag_what_is_under_the_line() -> None:
    svg = bars("Minutes per unit", [("Lee Park", 10.0), ("Sam Rivera", 15.0)], "min/unit",
               marker=15, flag_below=15)  # fmt: skip
    assert svg.startswith("<svg")
    assert "<title>Minutes per unit</title>" in svg
    assert svg.count('fill="#b71c1c"><title>') == 1  # only Lee Park's bar is under 15
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    columns = stacked_columns(
        "By status", [("2026-11-02", {"billable": 3, "planned": 1})],
        {"billable": "#2e7d32", "planned": "#c77700"}, {"planned": "held"},
    )  # fmt: skip
    assert "2026-11-02: 1 held" in columns
    assert "<script" not in columns


def test_the_expected_minutes_line_has_its_own_caption_row_and_crosses_no_figure() -> None:
    from plugin.render.charts import bars

    drawn = bars("Minutes per unit", [("Sam Rivera, DPT", 14.5), ("Ana Cruz, OTR", 16.0)],
                 "min/unit", marker=15.0, flag_below=15.0)  # fmt: skip
    assert "15 min/unit expected</text>" in drawn
    assert drawn.index("stroke-dasharray") < drawn.index("Sam Rivera")  # the line lies behind
    assert drawn.count('paint-order="stroke"') == 2  # each value on a halo
    without = bars("Units", [("97110", 3.0)], "units")
    assert "expected" not in without
