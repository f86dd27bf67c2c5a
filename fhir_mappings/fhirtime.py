"""FHIR date and dateTime values: parsed as written, never shifted to another time zone."""

from __future__ import annotations

import re
from datetime import date, datetime

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


class FhirValueError(ValueError):
    """A FHIR primitive value that cannot be read; the message says what was expected."""


def parse_instant(value: object) -> datetime:
    """A dateTime with a time and a time zone, e.g. 2026-11-02T09:00:00-05:00.

    Python reads FHIR's `Z` and `+hh:mm` forms; a dateTime without a time (a date, a month)
    cannot place minutes, and one without a zone is invalid FHIR when it has a time.
    """
    if not isinstance(value, str) or "T" not in value:
        raise FhirValueError(f"expected a dateTime with a time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FhirValueError(f"not a valid dateTime: {value!r}") from exc
    if parsed.tzinfo is None:
        raise FhirValueError(f"dateTime with a time needs a time zone: {value!r}")
    return parsed


def date_part(value: object) -> str:
    """The calendar date a date or dateTime was written on (its own zone, as documented)."""
    if not isinstance(value, str) or not _DATE.match(value):
        raise FhirValueError(f"expected a date (YYYY-MM-DD…), got {value!r}")
    day = value[:10]
    try:
        date.fromisoformat(day)
    except ValueError as exc:
        raise FhirValueError(f"not a valid date: {value!r}") from exc
    return day


def whole_minutes(start: datetime, end: datetime) -> int:
    """Whole minutes from start to end (seconds past the last whole minute do not count)."""
    return int((end - start).total_seconds() // 60)


def first_day(*values: object) -> date | None:
    """The date of the first value that is a FHIR date, dateTime or instant (its own calendar
    date, as written)."""
    for value in values:
        if isinstance(value, str) and len(value) >= 10:
            try:
                return date.fromisoformat(value[:10])
            except ValueError:
                continue
    return None
