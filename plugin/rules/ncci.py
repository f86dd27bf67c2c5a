"""CMS National Correct Coding Initiative edits on a billing day's lines: procedure-to-procedure
(PTP) pairs and medically unlikely edits (MUE), as dated data (config/ncci/).

PTP (NCCI Policy Manual ch.1 §A, §E; ch.11 §P): when both codes of a pair in force on the date
of service are billed for the patient by one provider, the column-two code is denied unless a
PTP-associated modifier applies. Modifier indicator 0: nothing bypasses the edit; 1: a modifier
(XU, or 59 where the payer asks) bypasses it when the services were given in distinct time
intervals; 9: not applicable. MUE: the most units of a code one provider reports for one
patient on one date of service; MAI 1 per line, 2 and 3 per day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from plugin.rules.findings import FindingPolicy
from plugin.rules.model import Explanation
from plugin.rules.visit import Finding, VisitService

PTP_SOURCE = "NCCI Policy Manual ch.1 §A, §E; ch.11 §P (procedure-to-procedure edits)"
MUE_SOURCE = "CMS NCCI medically unlikely edits (MUE), practitioner services"
BYPASS_MODIFIERS = ("XU", "59")  # XU: unusual, non-overlapping service; 59: distinct service


@dataclass(frozen=True, slots=True)
class PtpEdit:
    """One row of the practitioner PTP table."""

    column1: str
    column2: str
    effective: date | None  # None: in force since before the table's history
    # None: still in force; else the last date of service it applies to (CMS deletes edits at
    # the end of a quarter: 97140/97530, deleted 2019-12-31, applies through that day)
    deletion: date | None
    indicator: int  # 0 no modifier bypasses, 1 a modifier may, 9 not applicable

    def in_force(self, on: date) -> bool:
        if self.indicator == 9:
            return False
        started = self.effective is None or self.effective <= on
        return started and (self.deletion is None or on <= self.deletion)


@dataclass(frozen=True, slots=True)
class Mue:
    """One code's medically unlikely edit."""

    code: str
    units: int
    mai: int  # 1 per claim line; 2 per day (policy); 3 per day (clinical benchmark)
    effective: date | None


@dataclass(frozen=True, slots=True)
class NcciTables:
    """The PTP pairs by (column one, column two) and the MUEs by code, each with its history."""

    ptp: dict[tuple[str, str], tuple[PtpEdit, ...]] = field(default_factory=dict)
    mue: dict[str, tuple[Mue, ...]] = field(default_factory=dict)

    @staticmethod
    def of(ptp: Iterable[PtpEdit], mue: Iterable[Mue]) -> NcciTables:
        pairs: dict[tuple[str, str], list[PtpEdit]] = {}
        for edit in ptp:
            pairs.setdefault((edit.column1, edit.column2), []).append(edit)
        codes: dict[str, list[Mue]] = {}
        for item in mue:
            codes.setdefault(item.code, []).append(item)
        return NcciTables(
            {k: tuple(v) for k, v in pairs.items()},
            {k: tuple(sorted(v, key=lambda m: m.effective or date.min)) for k, v in codes.items()},
        )

    def pair(self, column1: str, column2: str, on: date) -> PtpEdit | None:
        """The edit in force on `on` for the pair, the strictest (indicator 0) first."""
        found = [e for e in self.ptp.get((column1, column2), ()) if e.in_force(on)]
        return min(found, key=lambda e: e.indicator) if found else None

    def mue_of(self, code: str, on: date) -> Mue | None:
        """The MUE in force on `on`: the latest effective on or before it (or undated)."""
        found = [m for m in self.mue.get(code, ()) if m.effective is None or m.effective <= on]
        return found[-1] if found else None


class EditedLine:
    """What the edits need of a charge line, and what they do to it (plugin.rules.decision
    turns these back into ChargeLines)."""

    __slots__ = ("code", "group", "held", "modifiers", "not_billable", "services", "units")

    def __init__(
        self, code: str, group: object, units: int, services: Sequence[VisitService]
    ) -> None:
        self.code = code
        self.group = group  # lines in one group are one provider's, one patient's, one day's
        self.units = units
        self.services = tuple(services)
        self.modifiers: list[str] = []
        self.not_billable: str | None = None  # the reason, when an edit denies the line
        self.held: list[Finding] = []


@dataclass
class EditResult:
    findings: list[Finding] = field(default_factory=list)
    explanation: list[Explanation] = field(default_factory=list)
    excess: dict[int, tuple[int, Finding]] = field(default_factory=dict)  # line index → held units


def apply_edits(
    lines: Sequence[EditedLine],
    tables: NcciTables,
    on: date,
    modifier: str,
    policy: FindingPolicy,
    where: str,
) -> EditResult:
    """PTP pairs, then MUEs, on the lines of one billing day; `modifier` is the payer's bypass
    modifier (XU or 59); `where` the resource findings name (the day's first encounter)."""
    result = EditResult()
    _ptp(lines, tables, on, modifier, policy, result)
    _mue(lines, tables, on, policy, where, result)
    return result


def _ptp(
    lines: Sequence[EditedLine],
    tables: NcciTables,
    on: date,
    modifier: str,
    policy: FindingPolicy,
    result: EditResult,
) -> None:
    for one in lines:
        for two in lines:
            if one is two or one.group != two.group or not one.units or not two.units:
                continue
            edit = tables.pair(one.code, two.code, on)
            if edit is None or two.not_billable:
                continue
            pair = f"{edit.column1}/{edit.column2}"
            if edit.indicator == 0:
                two.not_billable = (
                    f"NCCI PTP edit {pair} (modifier indicator 0): {two.code} is not billable "
                    f"with {one.code} on the same day; no modifier bypasses it."
                )
                result.explanation.append(Explanation(two.not_billable, PTP_SOURCE))
            elif _distinct(one.services, two.services):
                if modifier not in two.modifiers:
                    two.modifiers.append(modifier)
                result.explanation.append(
                    Explanation(
                        f"NCCI PTP edit {pair} (modifier indicator 1): {two.code} was given in "
                        f"time intervals apart from {one.code}'s, so it carries {modifier}.",
                        PTP_SOURCE,
                    )
                )
            else:
                finding = policy.make(
                    "ncci-ptp-not-distinct",
                    f"NCCI PTP edit {pair}: {two.code} is payable with {one.code} only with "
                    f"{modifier} for distinct time intervals, and the documented times overlap "
                    "or are missing.",
                    two.services[0].reference if two.services else None,
                    "Procedure.performedPeriod",
                )
                two.held.append(finding)
                result.findings.append(finding)


def _distinct(first: Sequence[VisitService], second: Sequence[VisitService]) -> bool:
    """Every service of both lines has its time, and no minute of one is in the other."""
    spans: list[tuple[datetime, datetime]] = []
    for service in (*first, *second):
        if service.start is None or service.end is None:
            return False
        spans.append((service.start, service.end))
    ones, twos = spans[: len(first)], spans[len(first) :]
    return all(
        a_end <= b_start or b_end <= a_start for a_start, a_end in ones for b_start, b_end in twos
    )


def _mue(
    lines: Sequence[EditedLine],
    tables: NcciTables,
    on: date,
    policy: FindingPolicy,
    where: str,
    result: EditResult,
) -> None:
    totals: dict[tuple[object, str], list[int]] = {}
    for index, line in enumerate(lines):
        if line.units and not line.not_billable:
            totals.setdefault((line.group, line.code), []).append(index)
    for (_, code), indexes in totals.items():
        mue = tables.mue_of(code, on)
        if mue is None:
            continue
        if mue.units == 0:
            reason = (
                f"{code} has a medically unlikely edit of 0 units (MAI {mue.mai}): not payable "
                "to practitioners."
            )
            for index in indexes:
                lines[index].not_billable = reason
            result.explanation.append(Explanation(reason, MUE_SOURCE))
            continue
        allowed = mue.units
        for index in indexes:  # in line order: the first lines keep their units
            line = lines[index]
            keep = min(line.units, allowed)
            allowed -= keep
            if keep == line.units:
                continue
            finding = policy.make(
                "mue-exceeded",
                f"{code}: {line.units - keep} unit(s) over its medically unlikely edit of "
                f"{mue.units} per day (MAI {mue.mai}); held for review.",
                line.services[0].reference if line.services else where,
                "ChargeItem.quantity",
            )
            result.excess[index] = (line.units - keep, finding)
            result.findings.append(finding)
            line.units = keep
        if any(i in result.excess for i in indexes):
            result.explanation.append(
                Explanation(
                    f"{code} is capped at its medically unlikely edit of {mue.units} unit(s) per "
                    f"day (MAI {mue.mai}); the units above it are a held line of their own.",
                    MUE_SOURCE,
                )
            )
