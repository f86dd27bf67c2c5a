"""One-on-one across patients: a timed code billed one-on-one means the therapist was with that
patient alone. The same performer's one-on-one timed services for two patients in the same
minutes cannot both be one-on-one (CMS Pub 100-04 ch.5 §20.2 A); the payer's group code
(97150: Pub 100-02 ch.15 §230.1 A, §230.2 A) describes them.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta

from msgspec.structs import replace

from plugin.rules.findings import FindingPolicy
from plugin.rules.history import OtherService
from plugin.rules.model import POOLED_KINDS, Catalog
from plugin.rules.visit import Finding, Visit, VisitService

_MINUTE = timedelta(minutes=1)
NAMED = 3  # other services named one by one in a finding; past it, how many


def one_on_one(code: str | None, catalog: Catalog) -> bool:
    """A code billed for direct one-on-one contact: 15-minute timed codes and their add-ons,
    supervised modalities excepted (they need no constant attendance)."""
    definition = catalog.codes.get(code or "")
    return bool(definition and definition.kind in POOLED_KINDS and not definition.supervised)


def concurrent_gaps(
    service: VisitService,
    visit: Visit,
    index: ColleagueIndex,
    catalog: Catalog,
    policy: FindingPolicy,
    group_code: str,
) -> list[Finding]:
    """`concurrent-patients` when a performer of this one-on-one timed service has a one-on-one
    timed service of another patient that shares at least one whole minute with it.

    Each performer's services for other patients are indexed once per visit
    (`colleague_index`): the ones overlapping a service are counted by two binary searches and
    the first named through a tree of their ends, so a day of n services against m others
    costs (n + m) log m, not n × m (8,000 took 55 s).

    Source: CMS Pub 100-04 ch.5 §20.2 A."""
    if (
        visit.colleagues is None
        or service.start is None
        or service.end is None
        or service.end - service.start < _MINUTE
        or not one_on_one(service.code, catalog)
    ):
        return []
    overlapping: list[tuple[OtherService, int]] = []
    count = 0
    for performer in sorted({p.reference for p in service.performers if p.reference}):
        others = index.get(performer)
        if others is not None:
            count += others.count(service.start, service.end)
            overlapping += others.first(service.start, service.end, NAMED)
    if not count:
        return []
    overlapping.sort(key=lambda found: (found[0].start, found[0].reference))  # in time order
    named = ", ".join(
        f"{o.code} ({o.reference}) by {m} minutes, both by {o.performer}"
        for o, m in overlapping[:NAMED]
    )
    more = f" and {count - NAMED} more" if count > NAMED else ""
    finding = policy.make(
        "concurrent-patients",
        f"{service.code} is billed one-on-one, but its performer treated another patient in the "
        f"same minutes: {named}{more}. Bill both patients' services as {group_code} "
        "(group therapy) if they were treated together.",
        service.reference,
        "Procedure.performedPeriod",
    )
    return [replace(finding, suggested_code=group_code)]


class _Performer:
    """One performer's one-on-one services for other patients, in order of start."""

    def __init__(self, others: list[OtherService]) -> None:
        others.sort(key=_start)
        self.others = others
        self.starts = [o.start for o in others]
        self.ends = sorted(o.end for o in others)
        self.tree = _MaxTree([o.end for o in others])

    def count(self, start: datetime, end: datetime) -> int:
        """Those sharing a whole minute with [start, end): started by end − 1 min, less those
        ended before start + 1 min (each of which started before start)."""
        begun = bisect.bisect_right(self.starts, end - _MINUTE)
        over = bisect.bisect_left(self.ends, start + _MINUTE)
        return max(0, begun - over)

    def first(self, start: datetime, end: datetime, most: int) -> list[tuple[OtherService, int]]:
        """Up to `most` of them, latest started first, with the minutes shared."""
        found: list[tuple[OtherService, int]] = []
        before = bisect.bisect_right(self.starts, end - _MINUTE)
        while len(found) < most:
            at = self.tree.last_at_least(before, start + _MINUTE)
            if at < 0:
                break
            other = self.others[at]
            shared = _minutes(max(start, other.start), min(end, other.end))
            found.append((other, shared))
            before = at
        return found


class _MaxTree:
    """The largest end over runs of positions: the last position before a bound whose end is
    at least a time, found in log n (a segment tree)."""

    def __init__(self, ends: list[datetime]) -> None:
        self.size = 1
        while self.size < len(ends):
            self.size *= 2
        self.tree: list[datetime | None] = [None] * (2 * self.size)
        for i, end in enumerate(ends):
            self.tree[self.size + i] = end
        for node in range(self.size - 1, 0, -1):
            left, right = self.tree[2 * node], self.tree[2 * node + 1]
            self.tree[node] = right if left is None else left if right is None else max(left, right)

    def last_at_least(self, before: int, at_least: datetime) -> int:
        return self._find(1, 0, self.size, before, at_least)

    def _find(self, node: int, low: int, high: int, before: int, at_least: datetime) -> int:
        best = self.tree[node]
        if low >= before or best is None or best < at_least:
            return -1
        if high - low == 1:
            return low
        middle = (low + high) // 2
        found = self._find(2 * node + 1, middle, high, before, at_least)
        return found if found >= 0 else self._find(2 * node, low, middle, before, at_least)


ColleagueIndex = dict[str, "_Performer"]


def colleague_index(visit: Visit, catalog: Catalog) -> ColleagueIndex:
    """The visit's colleagues' one-on-one services for other patients that last a minute or
    more, by performer (what `concurrent_gaps` compares each service with)."""
    by_performer: dict[str, list[OtherService]] = {}
    for other in visit.colleagues or ():
        if (
            other.patient != visit.patient
            and other.end - other.start >= _MINUTE
            and one_on_one(other.code, catalog)
        ):
            by_performer.setdefault(other.performer, []).append(other)
    return {p: _Performer(others) for p, others in by_performer.items()}


def _start(other: OtherService) -> datetime:
    return other.start


def _minutes(start: datetime, end: datetime) -> int:
    return int((end - start).total_seconds() // 60)
