"""The billing day: a patient's therapy visits on one date of service, decided together.

Medicare counts timed minutes "in a single day" (CMS Pub 100-04 ch.5 §20.2 C) and limits units
per provider, discipline, date of service and patient (§20.2 D), not per encounter: a patient
seen for PT in the morning and again in the afternoon has one day's total timed minutes. So
every trigger decides the whole day the visit belongs to, and the units are counted over all of
its visits (by discipline and billing provider, as `units.gather` groups them).

Which visits make up a day (docs/architecture.md "The billing day"):
- a *therapy* visit is one with at least one procedure mapped to a catalog code;
- from the EHR, the day of a triggering encounter is that encounter plus every `finished`
  therapy encounter of the same patient whose date of service is the same (an encounter still
  in progress joins when it is finished, and its own trigger decides the day again);
- from a file, every therapy visit of the same patient and date of service;
- a visit without a patient or a date of service, or with no therapy procedure, is decided on
  its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from plugin.rules.visit import Visit

FINISHED = "finished"


def is_therapy(visit: Visit) -> bool:
    """A visit with at least one procedure mapped to a catalog code."""
    return any(s.code is not None for s in visit.services)


def day_of(visit: Visit) -> tuple[str, str] | None:
    """(patient, date of service) when the visit can share a day with others, else None."""
    if visit.patient and visit.date_of_service and is_therapy(visit):
        return visit.patient, visit.date_of_service
    return None


def visit_order(visit: Visit) -> tuple[bool, float, str]:
    """The day's visits in order: by start (undated last), then by encounter reference."""
    start: datetime | None = visit.start
    return start is None, start.timestamp() if start else 0.0, visit.encounter


def days_of(visits: Iterable[Visit]) -> list[tuple[Visit, ...]]:
    """Visits grouped into billing days, each in day order; days in the order first seen."""
    grouped: dict[object, list[Visit]] = {}
    for visit in visits:
        key = day_of(visit) or visit.encounter
        grouped.setdefault(key, []).append(visit)
    return [tuple(sorted(found, key=visit_order)) for found in grouped.values()]


def day_for(visits: Iterable[Visit], trigger: str) -> tuple[Visit, ...] | None:
    """The triggering encounter's day among visits read from the EHR; None if it is not there.

    The trigger always takes part (an EHR may call the discharge hook before the encounter's
    status is `finished`); the others only when finished and of the same patient and date.
    """
    everything = list(visits)
    wanted = next((v for v in everything if v.encounter == trigger), None)
    if wanted is None:
        return None
    key = day_of(wanted)
    if key is None:
        return (wanted,)
    members = [v for v in everything if v is wanted or (v.status == FINISHED and day_of(v) == key)]
    return tuple(sorted(members, key=visit_order))
