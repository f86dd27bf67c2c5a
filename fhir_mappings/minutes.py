"""A procedure's billable minutes, from the sources docs/architecture.md "Minutes" names, in order.

1. a configured Procedure extension (Duration or Quantity in minutes);
2. the R5 cross-version `performer.period` extension (per-performer time, kept for CQ/CO);
3. `performedPeriod`.
No time at all is a documentation gap — never a guessed 15 minutes (docs/architecture.md "Minutes").
"""

from __future__ import annotations

import math
from datetime import datetime

from msgspec import Struct

from fhir_mappings.facts import PerformerFacts, ProcedureFacts
from fhir_mappings.fhirtime import FhirValueError, parse_instant, whole_minutes
from plugin.rules.findings import FindingPolicy
from plugin.rules.visit import Finding

_UNIT_MINUTES = {"min": 1.0, "h": 60.0, "s": 1 / 60, "minutes": 1.0, "minute": 1.0}
# One service cannot last longer than the calendar day it is billed on; a value past that is
# unreadable as a time (and 1e308 hours is no number of minutes at all).
MAX_READABLE_MINUTES = 24 * 60


class Timing(Struct):
    """What the record says about a procedure's time."""

    policy: FindingPolicy
    minutes: int | None = None
    source: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    # An empty list default is copied for each Timing (msgspec); `field(default_factory=…)`
    # would not do in the compiled build, which checks a class attribute against its type.
    performer_times: list[tuple[int | None, datetime | None, datetime | None]] = []
    findings: list[Finding] = []


def procedure_timing(facts: ProcedureFacts, policy: FindingPolicy) -> Timing:
    """Minutes of a procedure by the first source that has them; problems become findings."""
    timing = Timing(policy)
    timing.performer_times = [_performer_time(p, facts.key, timing) for p in facts.performers]
    period = _period(
        facts.performed_start, facts.performed_end, facts.key, "Procedure.performedPeriod", timing
    )
    if period:
        timing.start, timing.end = period
    if facts.minutes_value is not None:
        timing.minutes = _extension_minutes(facts.minutes_value, facts.key, timing)
        timing.source = "extension" if timing.minutes is not None else None
    elif any(start for _, start, _ in timing.performer_times):
        timing.minutes, bounds = _union_minutes(timing.performer_times)
        timing.source = "performer-period"
        if timing.start is None and bounds:
            timing.start, timing.end = bounds
    elif period:
        timing.minutes = whole_minutes(*period)
        timing.source = "performed-period"
    elif not facts.performed_has_period and not timing.findings:
        what = "only a performedDateTime (a moment, not a duration)"
        if facts.performed_datetime is None:
            what = "no time at all"
        timing.findings.append(
            timing.policy.make(
                "time-missing", f"The procedure has {what}.", facts.key, "Procedure.performed[x]"
            )
        )
    return timing


def _period(
    start_value: object, end_value: object, key: str, element: str, timing: Timing
) -> tuple[datetime, datetime] | None:
    if start_value is None and end_value is None:
        return None
    try:
        start = parse_instant(start_value) if start_value is not None else None
        end = parse_instant(end_value) if end_value is not None else None
    except FhirValueError as exc:
        timing.findings.append(timing.policy.make("time-unreadable", str(exc), key, element))
        return None
    if start is None or end is None:
        missing = "end" if end is None else "start"
        timing.findings.append(
            timing.policy.make(
                "time-incomplete", f"The period has no {missing}.", key, f"{element}.{missing}"
            )
        )
        return None
    if end < start:
        timing.findings.append(
            timing.policy.make(
                "time-invalid",
                f"The period ends ({end_value}) before it starts ({start_value}).",
                key,
                f"{element}.end",
            )
        )
        return None
    return start, end


def _performer_time(
    performer: PerformerFacts, key: str, timing: Timing
) -> tuple[int | None, datetime | None, datetime | None]:
    if not performer.has_period:
        return None, None, None
    element = "Procedure.performer.extension(performer.period)"
    period = _period(performer.period_start, performer.period_end, key, element, timing)
    if period is None:
        return None, None, None
    return whole_minutes(*period), period[0], period[1]


def _union_minutes(
    times: list[tuple[int | None, datetime | None, datetime | None]],
) -> tuple[int, tuple[datetime, datetime] | None]:
    """Minutes covered by any performer: time two staff spend together counts once.

    Source: CMS Pub 100-04 ch.5 §20.3 (co-treatment: minutes are never counted twice).
    """
    spans = sorted((s, e) for _, s, e in times if s is not None and e is not None)
    if not spans:
        return 0, None
    total_seconds = 0.0
    current_start, current_end = spans[0]
    for start, end in spans[1:]:
        if start > current_end:
            total_seconds += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    total_seconds += (current_end - current_start).total_seconds()
    return int(total_seconds // 60), (spans[0][0], max(e for _, e in spans))


def _extension_minutes(value: object, key: str, timing: Timing) -> int | None:
    element = "Procedure.extension(billable-minutes)"
    if not isinstance(value, dict) or not isinstance(value.get("value"), int | float):
        timing.findings.append(
            timing.policy.make(
                "time-unreadable",
                "The minutes extension has no Duration or Quantity value.",
                key,
                element,
            )
        )
        return None
    unit = str(value.get("code") or value.get("unit") or "min")
    factor = _UNIT_MINUTES.get(unit)
    try:
        amount = float(value["value"])
    except OverflowError:  # an integer past any float: no time at all
        amount = math.inf
    if factor is None or isinstance(value["value"], bool) or amount < 0:
        timing.findings.append(
            timing.policy.make(
                "time-unreadable",
                f"The minutes extension holds {amount:g} {unit}; expected "
                "a non-negative Duration in min, h or s.",
                key,
                element,
            )
        )
        return None
    minutes = amount * factor
    if not math.isfinite(minutes) or minutes > MAX_READABLE_MINUTES:
        timing.findings.append(
            timing.policy.make(
                "time-unreadable",
                f"The minutes extension holds {amount:g} {unit}: more than the "
                f"{MAX_READABLE_MINUTES} minutes of a day, so not a time one service can take.",
                key,
                element,
            )
        )
        return None
    if minutes != int(minutes):
        timing.findings.append(
            timing.policy.make(
                "minutes-fractional",
                f"{minutes:g} minutes documented; {int(minutes)} counted.",
                key,
                element,
            )
        )
    return int(minutes)
