"""A visit's decision: charge lines with units, modifiers and status, findings and explanation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from plugin.rules import sources
from plugin.rules.findings import FindingPolicy
from plugin.rules.gaps import unit_gaps, with_record_gaps
from plugin.rules.model import (
    Catalog,
    CodeKind,
    Discipline,
    Explanation,
    GroupKey,
    Method,
    Service,
    UnitLine,
    UnitsResult,
)
from plugin.rules.parameters import UnitParameters
from plugin.rules.units import decide_units
from plugin.rules.visit import Finding, Severity, Visit, VisitService

# The plan-of-care modifier every therapy-list code carries. Source: Pub 100-04 ch.5 §20.1.
PLAN_OF_CARE_MODIFIER = {Discipline.PT: "GP", Discipline.OT: "GO", Discipline.SLP: "GN"}


class LineStatus(StrEnum):
    """ChargeItem status of a line (DESIGN.md "Status")."""

    BILLABLE = "billable"
    PLANNED = "planned"  # held for documentation
    NOT_BILLABLE = "not-billable"  # documented, earns 0 units


@dataclass(frozen=True, slots=True)
class ChargeLine:
    """One charge: a code, its units and modifiers for one date and discipline of a visit."""

    key: str  # stable per encounter + date of service + discipline + code
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


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything decided about one visit."""

    visit: Visit
    lines: tuple[ChargeLine, ...]
    findings: tuple[Finding, ...]
    explanation: tuple[Explanation, ...]
    units: UnitsResult

    @property
    def alternatives(self) -> tuple[Mapping[str, int], ...]:
        return tuple(a for g in self.units.groups for a in g.alternatives)


def line_key(visit: Visit, day: str | None, discipline: Discipline, code: str) -> str:
    """The idempotency key of a charge line (DESIGN.md "Idempotency")."""
    return f"{visit.encounter_id}/{day or 'undated'}/{discipline.value}/{code}"


def decide_visit(
    visit: Visit,
    catalog: Catalog,
    parameters: UnitParameters,
    policy: FindingPolicy,
    on: date | None = None,
) -> Decision:
    """Documentation gaps, then units for the visit's completed, coded procedures under its
    payer's method, as charge lines held, billable or not billable."""
    visit = _at_payer_severity(with_record_gaps(visit, catalog, policy), policy)
    billed = [(s, s.code) for s in visit.services if s.billable_status and s.code is not None]
    services = [
        Service(code, s.minutes, s.discipline, s.date, visit.patient, visit.service_provider)
        for s, code in billed
    ]
    when = on or (date.fromisoformat(visit.date_of_service) if visit.date_of_service else None)
    when, not_in_force = _rules_date(visit, when or date.today(), parameters, policy)
    units = decide_units(services, catalog, parameters, method=visit.method, on=when)
    table = parameters.unit_table.at(when).value
    from_units = [policy.for_payer(f, visit.payer) for f in unit_gaps(visit, units, table, policy)]
    visit = dataclasses.replace(visit, findings=visit.findings + not_in_force + tuple(from_units))
    by_family = _services_by_family(visit, billed, catalog)
    visit_holds = _visit_holds(visit)
    pool_holds = _pool_holds(by_family, catalog) if visit.method is Method.CMS else {}
    lines = tuple(
        _line(
            visit,
            group.key,
            line,
            by_family.get((group.key, _head(line, catalog)), ()),
            visit_holds + (pool_holds.get(group.key, ()) if line.kind in _POOLED else ()),
            catalog,
        )
        for group in units.groups
        for line in group.lines
    )
    findings = visit.findings + tuple(f for s in visit.services for f in s.findings)
    method_note = Explanation(visit.method_reason, _method_source(visit.method))
    explanation = (method_note, *(e for g in units.groups for e in g.explanation))
    return Decision(visit, lines, findings, explanation, units)


def _rules_date(
    visit: Visit, when: date, parameters: UnitParameters, policy: FindingPolicy
) -> tuple[date, tuple[Finding, ...]]:
    """The date whose unit rules decide the visit. A date of service before the first rule in
    force cannot be decided: the units are worked out under the earliest rules so the lines show,
    and every line is held with the reason (a finding, never an exception).

    Source: CMS Pub 100-04 ch.5 §20.2 C (the unit table in force on the date of service).
    """
    table = parameters.unit_table
    if table.in_force(when):
        return when, ()
    first = table.first.since
    finding = policy.for_payer(
        policy.make(
            "rules-not-in-force",
            f"No unit rules in force on {when.isoformat()}: the unit table starts on "
            f"{first.isoformat()}.",
            visit.encounter,
            "Encounter.period.start",
        ),
        visit.payer,
    )
    return first, (finding,)


def _at_payer_severity(visit: Visit, policy: FindingPolicy) -> Visit:
    """Every finding at the severity the visit's payer sets (config/payers.yaml gap_severity)."""
    if not policy.payer_overrides.get(visit.payer or ""):
        return visit
    services = tuple(
        dataclasses.replace(s, findings=tuple(policy.for_payer(f, visit.payer) for f in s.findings))
        for s in visit.services
    )
    findings = tuple(policy.for_payer(f, visit.payer) for f in visit.findings)
    return dataclasses.replace(visit, services=services, findings=findings)


def _visit_holds(visit: Visit) -> tuple[Finding, ...]:
    """Holds on every line of the visit: the visit's own, and those of completed procedures that
    have no billing code — their minutes are missing from the day's total timed minutes, so no
    line's units can be trusted until they are coded (CMS Pub 100-04 ch.5 §20.2 C).
    """
    uncoded = tuple(
        f
        for s in visit.services
        if s.billable_status and s.code is None
        for f in s.findings
        if f.severity is Severity.HOLD
    )
    return tuple(f for f in visit.findings if f.severity is Severity.HOLD) + uncoded


_POOLED = (CodeKind.TIMED_15, CodeKind.ADDON)
_TIME_FINDINGS = ("time-missing", "time-invalid", "time-incomplete", "time-unreadable")


def _pool_holds(
    by_family: dict[tuple[GroupKey, str], tuple[VisitService, ...]], catalog: Catalog
) -> dict[GroupKey, tuple[Finding, ...]]:
    """Under the CMS method, a 15-minute service with unknown time holds every 15-minute line of
    its group: the day's total timed minutes, and so every share of the units, depend on it.

    Source: CMS Pub 100-04 ch.5 §20.2 C (units from total timed minutes).
    """
    holds: dict[GroupKey, list[Finding]] = {}
    for (key, head), services in by_family.items():
        if catalog.codes[head].kind is not CodeKind.TIMED_15:
            continue
        for service in services:
            holds.setdefault(key, []).extend(
                f for f in service.findings if f.code in _TIME_FINDINGS
            )
    return {key: tuple(found) for key, found in holds.items() if found}


def _head(line: UnitLine, catalog: Catalog) -> str:
    primary = catalog.codes[line.code].primary
    return primary or line.code


def _services_by_family(
    visit: Visit, billed: list[tuple[VisitService, str]], catalog: Catalog
) -> dict[tuple[GroupKey, str], tuple[VisitService, ...]]:
    """Which procedures stand behind each line: the same group and the same code family.

    The group key is built as units.gather builds it (REFERENCE §1.5, §8).
    """
    found: dict[tuple[GroupKey, str], list[VisitService]] = {}
    for service, code in billed:
        definition = catalog.codes[code]
        discipline = service.discipline or definition.disciplines[0]
        key = GroupKey(discipline, service.date, visit.patient, visit.service_provider)
        found.setdefault((key, definition.primary or code), []).append(service)
    return {key: tuple(value) for key, value in found.items()}


def _line(
    visit: Visit,
    key: GroupKey,
    line: UnitLine,
    services: tuple[VisitService, ...],
    visit_holds: tuple[Finding, ...],
    catalog: Catalog,
) -> ChargeLine:
    definition = catalog.codes[line.code]
    own = tuple(f for s in services for f in s.findings if f.severity is Severity.HOLD)
    holds = own + tuple(f for f in visit_holds if f not in own)
    status, note = _status(line, holds, visit.method)
    return ChargeLine(
        key=line_key(visit, key.date, key.discipline, line.code),
        code=line.code,
        system=definition.system,
        label=definition.label,
        kind=line.kind,
        units=line.units,
        minutes=line.minutes,
        discipline=key.discipline,
        date=key.date,
        modifiers=(PLAN_OF_CARE_MODIFIER[key.discipline],) if visit.plan_of_care_modifiers else (),
        status=status,
        holds=holds,
        note=note,
        services=services,
        derived_from=line.derived_from,
    )


def _status(line: UnitLine, holds: tuple[Finding, ...], method: Method) -> tuple[LineStatus, str]:
    """Held for documentation → planned; documented but 0 units → not-billable; else billable.

    Source: DESIGN.md "Status"; CMS Pub 100-04 ch.5 §20.2 C (a timed service that earns no unit
    is still documented, Example 4).
    """
    if holds:
        reasons = "; ".join(f"{h.code} ({h.resource}): {h.message}" for h in holds)
        return LineStatus.PLANNED, f"Held for documentation: {reasons}"
    if line.units == 0:
        rule = "8-minute rule on total timed minutes" if method is Method.CMS else "per-code rule"
        return (
            LineStatus.NOT_BILLABLE,
            f"{line.minutes} documented minutes of {line.code} earn no unit under the {rule}.",
        )
    return LineStatus.BILLABLE, ""


def _method_source(method: Method) -> str:
    return sources.UNITS_8_MINUTE.title if method is Method.CMS else sources.CPT_TIME_RULE.title
