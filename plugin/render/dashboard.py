"""The billing manager's figures for a period, from the run ledger: charges by status per date
of service, the most common holds and how fast they are fixed, units per code, and minutes per
unit by therapist (CMS Pub 100-04 ch.5 §20.2 C: about 15 minutes of direct contact per unit is
expected; a provider who consistently bills fewer is reviewed)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from plugin.render.report import count_lines

REVIEW_MINUTES_PER_UNIT = 15.0


class LedgerRun(Protocol):
    at: datetime
    encounter_id: str
    day: str | None
    lines: list[Any]


@dataclass
class HoldFix:
    code: str
    seen: int  # billing days where it held a line
    fixed: int  # of those, days a later decision no longer held for it
    median_hours: float | None  # from the first decision holding for it to the first not


@dataclass
class Dashboard:
    since: str
    until: str
    by_date: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    holds: list[HoldFix] = field(default_factory=list)
    units_by_code: list[tuple[str, int]] = field(default_factory=list)
    minutes_per_unit: list[tuple[str, float, int, int]] = field(default_factory=list)


def _in_period(line: dict[str, Any], since: str, until: str) -> bool:
    when = str(line.get("date") or "")
    return bool(when) and since <= when <= until


def _day_key(run: LedgerRun) -> str:
    return run.day or f"Encounter/{run.encounter_id}"


def dashboard(runs: Iterable[LedgerRun], since: str, until: str) -> Dashboard:
    """Every figure from the runs of the ledger (any order): each billing day's latest
    decision for the counts, its whole history for the time to fix."""
    history: dict[str, list[LedgerRun]] = defaultdict(list)
    for run in runs:
        lines = [ln for ln in run.lines if isinstance(ln, dict) and _in_period(ln, since, until)]
        if lines:
            history[_day_key(run)].append(run)
    result = Dashboard(since, until)
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    minutes: Counter[str] = Counter()
    timed_units: Counter[str] = Counter()
    everything: list[dict[str, Any]] = []
    for day_runs in history.values():
        day_runs.sort(key=lambda r: r.at)
        latest = [ln for ln in day_runs[-1].lines if isinstance(ln, dict)]
        everything += latest
        for line in latest:
            status = str(line.get("status"))
            statuses[str(line.get("date"))][status] += 1
            if status == "billable" and line.get("minutes") and line.get("units"):
                for who in _therapists(line):
                    minutes[who] += int(line["minutes"])
                    timed_units[who] += int(line["units"])
    counts = count_lines(everything)  # as the worklist and the demo count them
    result.by_date = [(day, dict(statuses[day])) for day in sorted(statuses)]
    result.totals = dict(counts.statuses)
    result.holds = _hold_fixes(history.values())
    result.units_by_code = counts.billable_units.most_common()
    result.minutes_per_unit = sorted(
        ((who, minutes[who] / timed_units[who], minutes[who], timed_units[who])
         for who in timed_units if timed_units[who]),
        key=lambda row: row[1],
    )  # fmt: skip
    return result


def latest_date(runs: Iterable[LedgerRun]) -> str | None:
    """The latest date of service the ledger holds a line of (the dashboard's default period
    ends there, so it opens on data)."""
    dates = [
        str(ln["date"])
        for run in runs
        for ln in run.lines
        if isinstance(ln, dict) and ln.get("date")
    ]
    return max(dates) if dates else None


def _therapists(line: dict[str, Any]) -> list[str]:
    """Who furnished the line, as the page names them (name and credential, else reference)."""
    found = []
    for t in line.get("therapists") or ():
        if isinstance(t, dict):
            name = str(t.get("name") or t.get("reference") or "")
            found.append(f"{name}, {t['credential']}" if t.get("credential") else name)
    return found or [str(line.get("provider") or "unknown")]


def _hold_fixes(days: Iterable[list[LedgerRun]]) -> list[HoldFix]:
    """Per hold code: on how many days it held a line, on how many a later decision no longer
    did, and the median time between the two (the runs of each day in time order)."""
    seen: Counter[str] = Counter()
    fixed: dict[str, list[float]] = defaultdict(list)
    for runs in days:
        first: dict[str, datetime] = {}
        done: set[str] = set()
        for run in runs:
            codes = {
                code for ln in run.lines if isinstance(ln, dict) for code in ln.get("holds") or ()
            }
            for code in codes:
                first.setdefault(code, run.at)
            for code in set(first) - codes - done:
                fixed[code].append((run.at - first[code]).total_seconds() / 3600)
                done.add(code)
        seen.update(first.keys())
    return [
        HoldFix(
            code,
            count,
            len(fixed[code]),
            round(statistics.median(fixed[code]), 1) if fixed[code] else None,
        )
        for code, count in seen.most_common()
    ]
