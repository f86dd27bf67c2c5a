"""A file run's earlier decided days in a patient's KX estimate (plugin.rules.episode).

From the EHR, the year's allowed amounts before a date of service are the patient's earlier
ChargeItems. A file is often a year of visits and no ChargeItems: there, each billing day sees
the patient's earlier days of the same year as the run decided them — their billable lines,
priced as the run priced them — besides the ChargeItems the file holds. Where both describe
the same date of service and discipline, the run's decision wins: the run decides that day
again, and its ChargeItems replace the ones written for it before (the same identifiers).

Days are decided in the file's order; a day whose patient has earlier-dated days of the year
not decided yet (a file not in date order) has those decided first and kept until their turn,
so the outputs stay in the file's order and each estimate is the same however the file is
sorted. Source: Pub 100-04 ch.5 §10.3 (the KX threshold on the year's allowed amounts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from msgspec.structs import replace

from plugin.rules.decision import Decision
from plugin.rules.history import PriorCharge
from plugin.rules.lines import LineStatus
from plugin.rules.visit import Visit

Day = tuple[Visit, ...]


def _dated(day: Day) -> tuple[str, date] | None:
    """(patient, date of service) of a day whose history is read; None otherwise."""
    first = day[0]
    if first.history is None or not first.patient or not first.date_of_service:
        return None
    try:
        return first.patient, date.fromisoformat(first.date_of_service[:10])
    except ValueError:
        return None


class YearToDate:
    """Decides a file's days (`decide`) so that each sees the patient's earlier days of the
    year, as decided by this run, in its KX estimate (`wants`: the day's payer applies it)."""

    def __init__(
        self,
        days: Sequence[Day],
        decide: Callable[[Day], Decision],
        wants: Callable[[Visit], bool],
    ) -> None:
        self._days = days
        self._decide = decide
        # (patient, year) → the indexes of its days, earliest first
        self._years: dict[tuple[str, int], list[int]] = {}
        self._when: dict[int, tuple[str, date]] = {}
        for index, day in enumerate(days):
            dated = _dated(day)
            if dated is not None and wants(day[0]):
                self._when[index] = dated
                self._years.setdefault((dated[0], dated[1].year), []).append(index)
        for indexes in self._years.values():
            indexes.sort(key=lambda i: (self._when[i][1], i))
        self._charges: dict[str, list[PriorCharge]] = {}  # patient → the run's billable lines
        self._ahead: dict[int, Decision | Exception] = {}  # decided before their turn
        self._done: set[int] = set()

    def decision(self, index: int) -> Decision:
        """The decision of day `index` (its failure raised), the patient's earlier days of
        the year decided first."""
        if index in self._ahead:
            found = self._ahead.pop(index)
            if isinstance(found, Exception):
                raise found
            return found
        when = self._when.get(index)
        if when is not None:
            patient, on = when
            for earlier in self._years[(patient, on.year)]:
                if self._when[earlier][1] >= on:
                    break
                if earlier not in self._done:
                    try:
                        self._ahead[earlier] = self._run(earlier)
                    except Exception as exc:  # noqa: BLE001 -- raised at its own turn
                        self._ahead[earlier] = exc
                        self._done.add(earlier)
        return self._run(index)

    def _run(self, index: int) -> Decision:
        self._done.add(index)
        day = self._days[index]
        when = self._when.get(index)
        if when is None:
            return self._decide(day)
        patient, on = when
        decision = self._decide(self._with_earlier(day, patient, on))
        self._charges.setdefault(patient, []).extend(
            PriorCharge(f"{line.key} (decided in this run)", on, line.discipline, line.code,
                        line.units, line.price, decided=True)
            for line in decision.lines
            if line.status is LineStatus.BILLABLE and line.units and line.price is not None
        )  # fmt: skip
        return decision

    def _with_earlier(self, day: Day, patient: str, on: date) -> Day:
        earlier = [
            c for c in self._charges.get(patient, ()) if c.date < on and c.date.year == on.year
        ]
        if not earlier:
            return day
        first = day[0]
        assert first.history is not None
        decided = {(c.date, c.discipline) for c in earlier}
        kept = [c for c in first.history.charges if (c.date, c.discipline) not in decided]
        history = first.history._replace(charges=(*kept, *earlier))
        return (replace(first, history=history), *day[1:])
