"""Rule parameters as dated values with references (the pattern of OpenFisca's dated parameters)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from plugin.rules.model import TieBreak

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reference:
    """Where a rule parameter comes from: a title down to the section, and a link."""

    title: str
    href: str = ""


@dataclass(frozen=True, slots=True)
class DatedValue(Generic[T]):
    """A value in force from `since` until the next dated value of the same parameter."""

    since: date
    value: T
    reference: Reference


class DatedParameter(Generic[T]):
    """A parameter whose value changes on dates: a new dated value, never `if year >= …`."""

    __slots__ = ("_starts", "_values", "name")

    def __init__(self, name: str, values: list[DatedValue[T]]) -> None:
        if not values:
            raise ValueError(f"{name}: needs at least one dated value")
        ordered = sorted(values, key=lambda v: v.since)
        self.name = name
        self._values = ordered
        self._starts = [v.since for v in ordered]

    @property
    def first(self) -> DatedValue[T]:
        """The earliest dated value."""
        return self._values[0]

    def in_force(self, when: date) -> bool:
        """Whether any value is in force on `when` (none is before the first value's date)."""
        return when >= self._starts[0]

    def at(self, when: date) -> DatedValue[T]:
        """The value in force on `when`; a date before the first value is an error."""
        index = bisect.bisect_right(self._starts, when) - 1
        if index < 0:
            raise LookupError(f"{self.name}: no value in force on {when.isoformat()}")
        return self._values[index]


@dataclass(frozen=True, slots=True)
class UnitTable:
    """The 15-minute unit table of CMS Pub 100-04 ch.5 §20.2 C as two numbers.

    The first unit is reached at `first_unit_minutes` total timed minutes and every further
    `unit_minutes` adds one: 8–22 → 1, 23–37 → 2, … and the same pattern past 2 hours.
    """

    unit_minutes: int
    first_unit_minutes: int
    published_rows: tuple[tuple[int, int, int], ...]  # (units, from, through) as CMS prints it


@dataclass(frozen=True, slots=True)
class UnitParameters:
    """Everything the unit rules read from configuration."""

    unit_table: DatedParameter[UnitTable]
    tie_break: tuple[TieBreak, ...]
    max_alternatives: int
