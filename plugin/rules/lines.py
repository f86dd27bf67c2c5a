"""A charge line of a billing day and its status (docs/architecture.md "Status")."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from plugin.rules.findings import TIME_FINDINGS
from plugin.rules.model import CodeKind, Discipline, Method, UnitLine
from plugin.rules.records import Record
from plugin.rules.visit import Diagnosis, Finding, VisitService


class LineStatus(StrEnum):
    """ChargeItem status of a line (docs/architecture.md "Status")."""

    BILLABLE = "billable"
    PLANNED = "planned"  # held for documentation
    NOT_BILLABLE = "not-billable"  # documented, earns 0 units


class ChargeLine(Record, frozen=True, gc=False):
    """One charge of a billing day: a code, its units and modifiers for one patient, date of
    service, discipline and billing provider, whichever of the day's visits documented it."""

    key: str  # stable per patient + date of service + discipline + billing provider + code
    code: str
    system: str
    label: str
    kind: CodeKind
    units: int
    minutes: int
    discipline: Discipline
    date: str | None
    modifiers: tuple[str, ...]
    status: LineStatus
    holds: tuple[Finding, ...]
    note: str
    services: tuple[VisitService, ...]
    derived_from: str | None = None
    # The encounters whose procedures the line counts, in day order; the first is the
    # ChargeItem's context (docs/architecture.md "The billing day").
    encounters: tuple[str, ...] = ()
    provider: str | None = None  # the billing provider (the encounters' serviceProvider)
    diagnoses: tuple[Diagnosis, ...] = ()  # ICD-10-CM, the procedures' own first, at most four
    price: Decimal | None = None  # units × the fee schedule's amount (priceOverride)
    currency: str = "USD"
    price_basis: str = ""  # how the price was reached, in words (ChargeItem.overrideReason)
    # The day's warnings that concern the line (its discipline's progress report, its KX
    # bucket), besides its procedures' own: the line is billed, someone should look
    warnings: tuple[Finding, ...] = ()

    @property
    def context(self) -> str | None:
        return self.encounters[0] if self.encounters else None


def line_status(
    line: UnitLine | ChargeLine,
    holds: tuple[Finding, ...],
    method: Method,
    own: tuple[VisitService, ...] | None = None,
) -> tuple[LineStatus, str]:
    """Held for documentation → planned; documented but 0 units → not-billable; else billable.
    A held line's note says why *it* is held: its own procedure's problem, or another one's
    that its units depend on (`own`: the line's procedures; a ChargeLine knows its own).

    Source: CMS Pub 100-04 ch.5 §20.2 C (units from the total timed minutes; a timed service
    that earns no unit is still documented, Example 4).
    """
    if holds:
        mine = {s.reference for s in (own if own is not None else _services(line))}
        reasons = "; ".join(dict.fromkeys(_why_held(h, mine).rstrip(". ") for h in holds))
        return LineStatus.PLANNED, f"Held for documentation: {reasons}."
    if line.units == 0:
        rule = "8-minute rule on total timed minutes" if method is Method.CMS else "per-code rule"
        return (
            LineStatus.NOT_BILLABLE,
            f"{line.minutes} documented minutes of {line.code} earn no unit under the {rule}.",
        )
    return LineStatus.BILLABLE, ""


def _services(line: UnitLine | ChargeLine) -> tuple[VisitService, ...]:
    return line.services if isinstance(line, ChargeLine) else ()


def _why_held(hold: Finding, mine: set[str]) -> str:
    """One hold, said from the line's side."""
    where = hold.resource or "the record"
    if hold.resource in mine or not mine:
        return f"{hold.code} ({where}): {hold.message}"
    if hold.code in TIME_FINDINGS:
        return (
            f"the day's total timed minutes, and so this line's units, cannot be known while "
            f"{where} lacks its time ({hold.code})"
        )
    if where.startswith("Encounter/"):
        return f"{hold.code} (the visit {where}): {hold.message}"
    return f"{hold.code} ({where}, whose minutes count with this line's): {hold.message}"
