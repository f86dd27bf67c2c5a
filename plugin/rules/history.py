"""What was read of a patient's episode of care around a billing day (plugin.rules.episode)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

from plugin.rules.model import Discipline, Role
from plugin.rules.records import Record


class PriorCharge(NamedTuple):
    """A charge of the patient on an earlier date of service, as the EHR holds it."""

    reference: str
    date: date
    discipline: Discipline
    code: str
    units: int
    amount: Decimal | None  # its priceOverride, when it carries one
    decided: bool = False  # a line of an earlier day this run decided (a file), not the EHR's


class CarePlanFacts(NamedTuple):
    reference: str
    start: date | None  # the first treatment under the plan (CarePlan.period.start)
    end: date | None  # the plan's own duration (CarePlan.period.end)
    certified: date | None  # the physician's/NPP's certification (the configured extension)
    disciplines: tuple[Discipline, ...]  # from CarePlan.category; () = any discipline
    addresses: tuple[str, ...] = ()  # the Conditions the plan addresses (CarePlan.addresses)
    goals: tuple[str, ...] = ()  # its Goals (CarePlan.goal)
    active: bool = True  # status active (a completed plan informs the episode only)
    delay_reason: str | None = None  # why its certification was delayed (the site's extension)
    # where the certification was read (the route and the resource); when not certified, the
    # certification resources that could not be read
    certified_by: str = ""


class ReportFacts(NamedTuple):
    """A progress report of the patient as read (plugin.rules.episode decides whose counts).

    Who wrote it: a Procedure's or an Observation's performers, a DocumentReference's authors;
    who signed it off: a DocumentReference's authenticator (a therapist co-signing an
    assistant's note). Each with the role read for them (performer.function, else the code of
    the PractitionerRole that is or belongs to them; None: no known role)."""

    reference: str
    written: date  # performed/effective date, else issued, else the document's date
    authors: tuple[tuple[str, Role | None], ...] = ()
    cosigners: tuple[tuple[str, Role | None], ...] = ()
    plans: tuple[str, ...] = ()  # the CarePlans it is linked to (basedOn, context.related)


class GoalFacts(NamedTuple):
    """A goal of the patient and the conditions it addresses (Goal.addresses)."""

    reference: str
    addresses: tuple[str, ...] = ()


class History(NamedTuple):
    """What was read of the patient's episode: None of this is a gap until a rule asks."""

    charges: tuple[PriorCharge, ...] = ()
    care_plans: tuple[CarePlanFacts, ...] = ()
    # (date of service, discipline or None when the encounter names none) of finished visits
    treatment_days: tuple[tuple[date, Discipline | None], ...] = ()
    reports: tuple[ReportFacts, ...] = ()  # progress reports, any author
    # resource types the EHR would not let us search: the rules that need them are not checked
    unread: tuple[str, ...] = ()


class OtherService(Record, frozen=True, gc=False):
    """A service of another patient by a performer of this visit (read from the file, or from
    the EHR with one search by performer and date)."""

    reference: str
    patient: str | None
    performer: str
    code: str
    start: datetime
    end: datetime
