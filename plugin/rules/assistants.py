"""CQ / CO: outpatient PT or OT furnished in whole or in part by a PTA or OTA.

Source: CMS Pub 100-04 ch.5 §20.1 (the CQ and CO modifiers, with GP and GO, required for dates
of service from 2020-01-01); SSA §1834(v); 42 CFR 410.59(a)(4), 410.60(a)(4) (85 % of the fee
schedule amount from 2022-01-01); the de minimis standard of the CY 2020 PFS final rule
(84 FR 62702-62707) and its refinement in the CY 2022 PFS final rule (86 FR 64996), with the
worked examples of the CMS page "Billing Examples Using CQ/CO Modifiers for Services Furnished
In Whole or In Part by PTAs and OTAs".

- A service is furnished "in part" by an assistant when the assistant, apart from the therapist,
  furnishes more than 10 % of its minutes; minutes the two spend together are the therapist's.
- Dates of service 2020-01-01 to 2021-12-31: the 10 % test on each line's minutes as a whole.
- From 2022-01-01, 15-minute codes are decided unit by unit: each full 15 minutes one provider
  furnishes alone is that provider's unit (an assistant's carries the modifier); the minutes
  left are compared for the final unit(s): one final unit is the therapist's when the therapist
  furnished 8 or more of its minutes (exception 1), else it carries the modifier when the
  assistant's share is over 10 %; two final units where each furnished 9–14 minutes and
  together 23–28 are billed one with and one without (exception 2). Codes that are not
  15-minute codes keep the 10 % test on the whole service.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from plugin.rules.model import ASSISTANT_OF, THERAPIST_OF, CodeKind, Discipline
from plugin.rules.records import Record
from plugin.rules.visit import VisitService

SOURCE = (
    "CMS Pub 100-04 ch.5 §20.1 (CQ/CO); CY 2022 PFS final rule, 86 FR 64996 (de minimis per "
    "unit and its two exceptions)"
)
SOURCE_CY2020 = "CMS Pub 100-04 ch.5 §20.1 (CQ/CO); CY 2020 PFS final rule, 84 FR 62702 (10 %)"
REQUIRED_FROM = date(2020, 1, 1)
PER_UNIT_FROM = date(2022, 1, 1)
DE_MINIMIS = 0.10  # more than this share of a service's minutes makes it "in part"
UNIT = 15
MODIFIER = {Discipline.PT: "CQ", Discipline.OT: "CO"}


class Shares(Record, frozen=True, gc=False):
    """A service's minutes by who furnished them: the therapist's (with the minutes the two
    spent together), and the assistant's apart from the therapist."""

    therapist: int
    assistant: int


def service_shares(service: VisitService) -> Shares | None:
    """Who furnished the service's minutes; None when a therapist and an assistant are both
    on the procedure and their own periods are not all recorded (it cannot be told)."""
    minutes = service.minutes or 0
    assistants = [p for p in service.performers if p.role in ASSISTANT_OF]
    if not assistants:
        return Shares(minutes, 0)
    therapists = [p for p in service.performers if p.role in THERAPIST_OF]
    if not therapists:
        return Shares(0, minutes)
    spans = [(p.start, p.end) for p in (*assistants, *therapists)]
    if any(start is None or end is None for start, end in spans):
        return None
    apart = _seconds_apart(
        [(p.start, p.end) for p in assistants if p.start and p.end],
        [(p.start, p.end) for p in therapists if p.start and p.end],
    )
    alone = min(int(apart // 60), minutes)
    return Shares(minutes - alone, alone)


def _seconds_apart(
    ours: list[tuple[datetime, datetime]], theirs: list[tuple[datetime, datetime]]
) -> float:
    """Seconds covered by `ours` and by none of `theirs`."""
    covered = 0.0
    for start, end in _union(ours):
        length = (end - start).total_seconds()
        for other_start, other_end in _union(theirs):
            overlap = (min(end, other_end) - max(start, other_start)).total_seconds()
            length -= max(0.0, overlap)
        covered += length
    return covered


def _union(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class UnitSplit(Record, frozen=True, gc=False):
    """How many of a line's units carry CQ/CO, and why, unit by unit."""

    modified: int
    notes: tuple[str, ...]
    source: str


def split_units(
    code: str, kind: CodeKind, units: int, shares: Shares, on: date, modifier: str
) -> UnitSplit:
    """The units of one line that carry `modifier`, decided as the module docstring says."""
    therapist, assistant = shares.therapist, shares.assistant
    if on < REQUIRED_FROM or assistant == 0 or units == 0:
        return UnitSplit(0, (), SOURCE)
    if therapist == 0:
        note = (
            f"{code}: all {assistant} minutes were furnished by the assistant, so each of its "
            f"{units} unit(s) carries {modifier}."
        )
        return UnitSplit(units, (note,), SOURCE)
    if kind is not CodeKind.TIMED_15 or on < PER_UNIT_FROM:
        return _whole_service(code, units, shares, on, modifier)
    return _per_unit(code, units, shares, modifier)


def _whole_service(code: str, units: int, shares: Shares, on: date, modifier: str) -> UnitSplit:
    therapist, assistant = shares.therapist, shares.assistant
    share = assistant / (therapist + assistant)
    basis = "the service as a whole" if on >= PER_UNIT_FROM else "the service (before 2022)"
    source = SOURCE if on >= PER_UNIT_FROM else SOURCE_CY2020
    if share > DE_MINIMIS:
        note = (
            f"{code}: the assistant furnished {assistant} of {therapist + assistant} minutes "
            f"apart from the therapist ({share:.0%}, over the 10 % de minimis, tested on "
            f"{basis}), so its {units} unit(s) carry {modifier}."
        )
        return UnitSplit(units, (note,), source)
    note = (
        f"{code}: the assistant furnished {assistant} of {therapist + assistant} minutes apart "
        f"from the therapist ({share:.0%}, not over the 10 % de minimis): no {modifier}."
    )
    return UnitSplit(0, (note,), source)


def _per_unit(code: str, units: int, shares: Shares, modifier: str) -> UnitSplit:
    therapist, assistant = shares.therapist, shares.assistant
    notes: list[str] = []
    left = units
    # Each full 15 minutes one provider furnished alone is a unit of that provider's. An
    # assistant's full units are placed first, should the line hold fewer units than full
    # blocks (a code capped by another's share of the day's units): never a CQ/CO unit lost.
    own_assistant = min(assistant // UNIT, left)
    left -= own_assistant
    own_therapist = min(therapist // UNIT, left)
    left -= own_therapist
    modified = own_assistant
    if own_assistant:
        notes.append(
            f"{code}: {own_assistant} unit(s) of 15 minutes furnished by the assistant alone "
            f"carry {modifier}."
        )
    if own_therapist:
        notes.append(
            f"{code}: {own_therapist} unit(s) of 15 minutes furnished by the therapist carry "
            f"no {modifier}."
        )
    rest_t = therapist - UNIT * (therapist // UNIT)
    rest_a = assistant - UNIT * (assistant // UNIT)
    if left == 2 and 9 <= rest_t <= 14 and 9 <= rest_a <= 14 and 23 <= rest_t + rest_a <= 28:
        notes.append(
            f"{code}: the last two units were {rest_t} minutes by the therapist and {rest_a} by "
            f"the assistant (each 9–14, together 23–28): one carries {modifier}, one does not "
            "(CY 2022 exception 2)."
        )
        return UnitSplit(modified + 1, tuple(notes), SOURCE)
    while left > 0:
        left -= 1
        unit_minutes = rest_t + rest_a
        if rest_a == 0:
            notes.append(f"{code}: the final unit's {rest_t} minutes are the therapist's.")
        elif rest_t >= 8:
            notes.append(
                f"{code}: the therapist furnished {rest_t} of the final unit's {unit_minutes} "
                f"minutes (8 or more): no {modifier} (CY 2022 exception 1)."
            )
        elif rest_a / unit_minutes > DE_MINIMIS:
            modified += 1
            notes.append(
                f"{code}: the assistant furnished {rest_a} of the final unit's {unit_minutes} "
                f"minutes ({rest_a / unit_minutes:.0%}, over 10 %) and the therapist under 8: "
                f"it carries {modifier}."
            )
        else:
            notes.append(
                f"{code}: the assistant furnished {rest_a} of the final unit's {unit_minutes} "
                f"minutes (not over 10 %): no {modifier}."
            )
        rest_t = rest_a = 0  # the final unit takes the minutes left; a unit past it has none
    return UnitSplit(modified, tuple(notes), SOURCE)


def line_shares(services: Sequence[VisitService]) -> Shares | None:
    """The shares of every service a line counts, added up; None if any cannot be told."""
    therapist = assistant = 0
    for service in services:
        shares = service_shares(service)
        if shares is None:
            return None
        therapist += shares.therapist
        assistant += shares.assistant
    return Shares(therapist, assistant)
