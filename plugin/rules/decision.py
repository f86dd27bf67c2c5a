"""A visit's decision: charge lines with units, modifiers and status, findings and explanation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from msgspec.structs import replace

from plugin.rules import sources
from plugin.rules.activity import Vocabulary
from plugin.rules.claim_edits import (
    ClaimTables,
    priced,
    with_assistant_modifiers,
    with_episode,
    with_ncci_edits,
)
from plugin.rules.concurrency import one_on_one
from plugin.rules.day import visit_order
from plugin.rules.families import group_key
from plugin.rules.findings import TIME_FINDINGS, FindingPolicy
from plugin.rules.gaps import (
    EVALUATION_BY_ASSISTANT,
    unit_gaps,
    with_day_overlaps,
    with_record_gaps,
)
from plugin.rules.lines import ChargeLine, LineStatus, line_status
from plugin.rules.model import (
    POOLED_KINDS,
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
from plugin.rules.payers import DEFAULT_PAYER, Payer
from plugin.rules.records import Record
from plugin.rules.systems import ICD10CM
from plugin.rules.units import decide_units
from plugin.rules.visit import Diagnosis, Finding, Severity, Visit, VisitService

# The plan-of-care modifier every therapy-list code carries. Source: Pub 100-04 ch.5 §20.1.
PLAN_OF_CARE_MODIFIER = {Discipline.PT: "GP", Discipline.OT: "GO", Discipline.SLP: "GN"}


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything decided about one billing day: its visits (earliest first), its lines."""

    visit: Visit  # the day's first visit (its method and payer are the day's)
    lines: tuple[ChargeLine, ...]
    findings: tuple[Finding, ...]
    explanation: tuple[Explanation, ...]
    units: UnitsResult
    visits: tuple[Visit, ...] = ()
    payer: Payer = DEFAULT_PAYER  # the day's payer, resolved: the policies its lines were billed by

    def __post_init__(self) -> None:
        if not self.visits:
            object.__setattr__(self, "visits", (self.visit,))

    @property
    def alternatives(self) -> tuple[Mapping[str, int], ...]:
        return tuple(a for g in self.units.groups for a in g.alternatives)

    @property
    def owner(self) -> str:
        """Whose day it is: the patient, or the encounter of a visit decided on its own."""
        return day_owner(self.visits)

    @property
    def day(self) -> str:
        """The billing day's name: "Patient/123|2026-11-02" (ledger, worklist, Provenance)."""
        return f"{self.owner}|{self.visit.date_of_service or 'undated'}"


def day_owner(visits: tuple[Visit, ...]) -> str:
    first = visits[0]
    shared = len({(v.patient, v.date_of_service) for v in visits}) == 1
    if first.patient and first.date_of_service and shared:
        return first.patient
    return first.encounter


def line_key(owner: str, key: GroupKey, code: str) -> str:
    """The idempotency key of a charge line: patient, date of service, discipline, billing
    provider and code (docs/architecture.md "Idempotency"); a visit without a patient or a
    date is its own day, owned by its encounter."""
    provider = key.provider or "no-provider"
    return f"{owner}/{key.date or 'undated'}/{key.discipline.value}/{provider}/{code}"


def decide_day(
    visits: Sequence[Visit],
    catalog: Catalog,
    parameters: UnitParameters,
    policy: FindingPolicy,
    claims: ClaimTables,
    vocabulary: Vocabulary | None = None,
    on: date | None = None,
) -> Decision:
    """Documentation gaps of each visit (with `vocabulary`: what each note says was done),
    then units for the day's completed, coded procedures
    under its payer's method, as charge lines held, billable or not billable; then, for a payer
    that applies them, the CMS NCCI edits (`claims.edits`: PTP pairs and MUEs), the fee
    schedule's prices and the episode rules. The rules in force on `on` (default: the first
    visit's date of service) decide it.

    Minutes are totalled per patient, date of service, discipline and billing provider across
    every visit of the day (CMS Pub 100-04 ch.5 §20.2 C "in a single day", §20.2 D).
    """
    ordered = sorted(visits, key=visit_order)
    payer = claims.payer(ordered[0].payer)  # the day's payer: its first visit's, resolved
    checked = [with_record_gaps(v, catalog, policy, payer, vocabulary) for v in ordered]
    checked = [_at_payer_severity(v, policy) for v in with_day_overlaps(checked, catalog, policy)]
    first = checked[0]
    billed = [
        (v, s, s.code)
        for v in checked
        for s in v.services
        if s.billable_status and s.code is not None
    ]
    services = [
        Service(code, s.minutes, s.discipline, s.date, v.patient, v.service_provider)
        for v, s, code in billed
    ]
    when = on or (date.fromisoformat(first.date_of_service) if first.date_of_service else None)
    when, not_in_force = _rules_date(first, when or date.today(), parameters, policy)
    units = decide_units(services, catalog, parameters, method=first.method, on=when)
    table = parameters.unit_table.at(when).value
    from_units = [policy.for_payer(f, first.payer) for f in unit_gaps(first, units, table, policy)]
    day_findings = not_in_force + tuple(from_units)
    if day_findings:
        checked[0] = first = replace(first, findings=first.findings + day_findings)
    by_family = _services_by_family(billed, services, catalog)
    holds_of = _visit_holds_by_group(checked, by_family)
    pool_holds = _pool_holds(by_family, catalog) if first.method is Method.CMS else {}
    owner = day_owner(tuple(checked))
    lines = tuple(
        _line(
            first,
            owner,
            group.key,
            line,
            by_family.get((group.key, _head(line, catalog)), ()),
            holds_of(group.key)
            + (pool_holds.get(group.key, ()) if line.kind in POOLED_KINDS else ()),
            catalog,
            policy,
            payer,
        )
        for group in units.groups
        for line in group.lines
    )
    assistant_notes: tuple[Explanation, ...] = ()
    if payer.assistant_modifiers:
        lines, assistant_notes = with_assistant_modifiers(lines, when)
    edit_notes: tuple[Explanation, ...] = ()
    edit_findings: tuple[Finding, ...] = ()
    if claims.edits is not None and payer.ncci_edits:
        lines, edit_findings, edit_notes = with_ncci_edits(
            lines, claims.edits, when, first, policy, payer
        )
    if claims.fees is not None:
        lines = tuple(priced(ln, claims.fees, when) for ln in lines)
    episode_findings: tuple[Finding, ...] = ()
    episode_notes: tuple[Explanation, ...] = ()
    if claims.episode is not None:
        lines, episode_findings, episode_notes = with_episode(
            lines, claims, when, checked, policy, payer
        )
    findings = tuple(f for v in checked for f in (*v.findings, *_service_findings(v)))
    findings += tuple(
        dict.fromkeys(h for ln in lines for h in ln.holds if h.code == "diagnosis-not-icd10")
    )
    findings += edit_findings + episode_findings
    explanation = (
        Explanation(first.method_reason, _method_source(first.method)),
        *_day_note(checked),
        *_roles_note(checked),
        *_one_on_one_note(checked, catalog),
        *(e for g in units.groups for e in g.explanation),
        *_translated_diagnoses(lines),
        *assistant_notes,
        *edit_notes,
        *episode_notes,
    )
    # each step said once (visits of one day can bring the same note twice)
    explanation = tuple(dict.fromkeys(explanation))
    return Decision(first, lines, findings, explanation, units, tuple(checked), payer)


def _translated_diagnoses(lines: tuple[ChargeLine, ...]) -> tuple[Explanation, ...]:
    """Each diagnosis a line bills under an ICD-10-CM code an admin mapping table gave it."""
    notes = []
    for diagnosis in dict.fromkeys(d for ln in lines for d in ln.diagnoses if d.translated_by):
        icd, *others = diagnosis.codings
        source = ", ".join(f"{c.system}|{c.code}" for c in others)
        notes.append(
            Explanation(
                f"{diagnosis.reference or 'A reason code'} ({source}) is billed as ICD-10-CM "
                f"{icd.code}, translated through the mapping table {diagnosis.translated_by}.",
                "HIPAA code sets, 45 CFR 162.1002 (ICD-10-CM for diagnoses); the site's mapping "
                "table",
            )
        )
    return tuple(notes)


def _service_findings(visit: Visit) -> tuple[Finding, ...]:
    return tuple(f for s in visit.services for f in s.findings)


def _one_on_one_note(visits: list[Visit], catalog: Catalog) -> tuple[Explanation, ...]:
    """Said when the performers' services for other patients could not be read (a hook with no
    EHR to ask, an EHR that does not search Procedure): one-on-one was not checked."""
    unread = [
        v
        for v in visits
        if v.colleagues is None and any(one_on_one(s.code, catalog) for s in v.services)
    ]
    if not unread:
        return ()
    return (
        Explanation(
            "One-on-one across patients was not checked: the performers' services for other "
            "patients at the same time could not be read.",
            "CMS Pub 100-04 ch.5 §20.2 A (timed codes: direct one-on-one contact)",
        ),
    )


def _roles_note(visits: list[Visit]) -> tuple[Explanation, ...]:
    """Who each performer is, and where their role was read (the order of
    fhir_mappings.roles): what CQ/CO, the discipline and the supervision rules rest on."""
    said: dict[str, str] = {}
    for visit in visits:
        for service in visit.services:
            for p in service.performers:
                if p.reference and p.role is not None and p.reference not in said:
                    coding = f" {p.role_coding[0]}|{p.role_coding[1]}" if p.role_coding else ""
                    said[p.reference] = f"{p.reference} {p.role.value} ({p.role_source}{coding})"
    if not said:
        return ()
    return (
        Explanation(
            "Performer roles: " + "; ".join(said.values()) + ".",
            "Pub 100-02 ch.15 §230 (who furnishes therapy); config/roles.yaml (performer.function, "
            "PractitionerRole.specialty and .code, Practitioner.qualification, the site's "
            "practitioner table)",
        ),
    )


def _day_note(visits: list[Visit]) -> tuple[Explanation, ...]:
    if len(visits) < 2:
        return ()
    names = ", ".join(v.encounter for v in visits)
    return (
        Explanation(
            f"The {len(visits)} visits of {visits[0].date_of_service} ({names}) are one billing "
            "day: their timed minutes are totalled per discipline and billing provider.",
            sources.BILLING_DAY.title,
        ),
    )


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
        replace(s, findings=tuple(policy.for_payer(f, visit.payer) for f in s.findings))
        for s in visit.services
    )
    findings = tuple(policy.for_payer(f, visit.payer) for f in visit.findings)
    return replace(visit, services=services, findings=findings)


def _visit_holds(visit: Visit) -> tuple[Finding, ...]:
    """Holds on every line the visit contributes to: the visit's own, and those of completed
    procedures that have no billing code — their minutes are missing from the day's total timed
    minutes, so no line's units can be trusted until they are coded (CMS Pub 100-04 ch.5
    §20.2 C).
    """
    uncoded = tuple(
        f
        for s in visit.services
        if s.billable_status and s.code is None
        for f in s.findings
        if f.severity is Severity.HOLD
    )
    return tuple(f for f in visit.findings if f.severity is Severity.HOLD) + uncoded


def _visit_holds_by_group(
    visits: list[Visit], by_family: dict[tuple[GroupKey, str], tuple[_Billed, ...]]
) -> Callable[[GroupKey], tuple[Finding, ...]]:
    """The visit holds that reach a group's lines: those of every visit with services in the
    group (its units are counted from all of them), and those of a visit with no billed
    service at all (what it holds back cannot be placed in a group)."""
    contributors: dict[GroupKey, set[str]] = {}
    for (key, _), billed in by_family.items():
        contributors.setdefault(key, set()).update(b.visit.encounter for b in billed)
    placed = set().union(*contributors.values()) if contributors else set()
    own = {v.encounter: _visit_holds(v) for v in visits}
    everywhere = tuple(f for v in visits if v.encounter not in placed for f in own[v.encounter])
    by_group = {
        key: tuple(f for v in visits if v.encounter in named for f in own[v.encounter]) + everywhere
        for key, named in contributors.items()
    }
    return lambda key: by_group.get(key, everywhere)


def _pool_holds(
    by_family: dict[tuple[GroupKey, str], tuple[_Billed, ...]], catalog: Catalog
) -> dict[GroupKey, tuple[Finding, ...]]:
    """Under the CMS method, a 15-minute service with unknown time holds every 15-minute line of
    its group: the day's total timed minutes, and so every share of the units, depend on it.

    Source: CMS Pub 100-04 ch.5 §20.2 C (units from total timed minutes).
    """
    holds: dict[GroupKey, list[Finding]] = {}
    for (key, head), billed in by_family.items():
        if catalog.codes[head].kind is not CodeKind.TIMED_15:
            continue
        for item in billed:
            holds.setdefault(key, []).extend(
                f for f in item.service.findings if f.code in TIME_FINDINGS
            )
    return {key: tuple(found) for key, found in holds.items() if found}


def _head(line: UnitLine, catalog: Catalog) -> str:
    primary = catalog.codes[line.code].primary
    return primary or line.code


class _Billed(Record, frozen=True, gc=False):
    """A billed procedure with the visit that documented it."""

    visit: Visit
    service: VisitService


def _services_by_family(
    billed: list[tuple[Visit, VisitService, str]], services: list[Service], catalog: Catalog
) -> dict[tuple[GroupKey, str], tuple[_Billed, ...]]:
    """Which procedures stand behind each line: the same group (families.group_key, as the
    units were counted) and the same code family."""
    found: dict[tuple[GroupKey, str], list[_Billed]] = {}
    for (visit, service, code), counted in zip(billed, services, strict=True):
        definition = catalog.codes[code]
        key = group_key(counted, definition)
        found.setdefault((key, definition.primary or code), []).append(_Billed(visit, service))
    return {key: tuple(value) for key, value in found.items()}


def _line(
    visit: Visit,
    owner: str,
    key: GroupKey,
    line: UnitLine,
    billed: tuple[_Billed, ...],
    visit_holds: tuple[Finding, ...],
    catalog: Catalog,
    policy: FindingPolicy,
    payer: Payer,
) -> ChargeLine:
    definition = catalog.codes[line.code]
    services = tuple(b.service for b in billed)
    own = tuple(f for s in services for f in s.findings if f.severity is Severity.HOLD)
    holds = own + tuple(dict.fromkeys(f for f in visit_holds if f not in own))
    diagnoses, uncoded = _line_diagnoses(billed)
    if uncoded and not diagnoses and line.units:
        holds += (_not_icd10(uncoded, services, visit, policy),)
    status, note = line_status(line, holds, visit.method, services)
    by_assistant = [f for s in services for f in s.findings if f.code == EVALUATION_BY_ASSISTANT]
    if by_assistant and line.units:  # never billed, whatever else holds it
        status = LineStatus.NOT_BILLABLE
        note = f"Not billable: {by_assistant[0].message} (Pub 100-02 ch.15 §230.1 B, §230.2 B)"
    return ChargeLine(
        key=line_key(owner, key, line.code),
        code=line.code,
        system=definition.system,
        label=definition.label,
        kind=line.kind,
        units=line.units,
        minutes=line.minutes,
        discipline=key.discipline,
        date=key.date,
        modifiers=(PLAN_OF_CARE_MODIFIER[key.discipline],) if payer.plan_of_care_modifiers else (),
        status=status,
        holds=holds,
        note=note,
        services=services,
        derived_from=line.derived_from,
        encounters=tuple(dict.fromkeys(b.visit.encounter for b in billed)),
        provider=key.provider,
        diagnoses=diagnoses,
    )


MAX_DIAGNOSES = 4  # diagnosis pointers a claim line carries (ASC X12 837P, SV107)


def _line_diagnoses(billed: tuple[_Billed, ...]) -> tuple[tuple[Diagnosis, ...], int]:
    """The line's ICD-10-CM diagnoses: those its procedures name first, then its encounters'
    by rank; each once, at most four. Also how many it had with no ICD-10-CM coding."""
    candidates = [d for b in billed for d in b.service.diagnoses]
    for visit in {b.visit.encounter: b.visit for b in billed}.values():
        candidates += visit.diagnoses
    found: dict[tuple[str, str], Diagnosis] = {}
    uncoded = 0
    for diagnosis in candidates:
        icd = next((c for c in diagnosis.codings if c.system == ICD10CM), None)
        if icd is None:
            uncoded += 1
        elif (icd.system, icd.code) not in found:
            found[(icd.system, icd.code)] = diagnosis
    return tuple(found.values())[:MAX_DIAGNOSES], uncoded


def _not_icd10(
    uncoded: int, services: tuple[VisitService, ...], visit: Visit, policy: FindingPolicy
) -> Finding:
    """A line whose diagnoses are coded only in other systems (SNOMED CT …): a claim needs
    ICD-10-CM. Source: HIPAA code sets, 45 CFR 162.1002 (ICD-10-CM for diagnoses)."""
    return policy.for_payer(
        policy.make(
            "diagnosis-not-icd10",
            f"{uncoded} diagnosis(es) of this line have no ICD-10-CM code.",
            services[0].reference if services else visit.encounter,
            "Condition.code",
        ),
        visit.payer,
    )


def _method_source(method: Method) -> str:
    return sources.UNITS_8_MINUTE.title if method is Method.CMS else sources.CPT_TIME_RULE.title
