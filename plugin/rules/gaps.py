"""Documentation gaps: what the record must show before a therapy charge can go out.

Pure checks on a `Visit` (CMS Pub 100-04 ch.5 §20.3; NCCI Policy Manual ch.11 §P; Pub 100-02
ch.15 §220.3). Each returns findings with a stable code, a one-line message and where the
problem is; severity, fix and source come from the finding policy
(config/rules/findings.yaml), which payers may override.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from msgspec.structs import replace

from plugin.rules.activity import Vocabulary
from plugin.rules.assistants import service_shares
from plugin.rules.concurrency import ColleagueIndex, colleague_index, concurrent_gaps
from plugin.rules.documentation import documentation_gaps
from plugin.rules.findings import FindingPolicy
from plugin.rules.model import (
    ASSISTANT_OF,
    POOLED_KINDS,
    THERAPIST_OF,
    Catalog,
    CodeKind,
    Discipline,
    UnitsResult,
)
from plugin.rules.parameters import UnitTable
from plugin.rules.payers import Payer
from plugin.rules.visit import ROLE_DISCIPLINE, Finding, Role, Severity, Visit, VisitService

EVALUATION_BY_ASSISTANT = "evaluation-by-assistant"


def with_record_gaps(
    visit: Visit,
    catalog: Catalog,
    policy: FindingPolicy,
    payer: Payer,
    vocabulary: Vocabulary | None = None,
) -> Visit:
    """The visit with every documentation gap of its own record added to its findings, under
    the day's payer (`payer`: whether it wants CQ/CO, its code for a group); with a
    vocabulary, what each timed service's note says is read as well (plugin.rules.documentation).

    Overlapping time is looked for over the whole billing day (`with_day_overlaps`).
    """
    colleagues = colleague_index(visit, catalog)  # once per visit, not per service
    services = tuple(
        _add(
            _role_held(s, catalog, payer),
            _service_gaps(s, s.code, visit, colleagues, catalog, policy, payer, vocabulary),
        )
        if s.code and _checked(s)
        else s
        for s in visit.services
    )
    return replace(
        visit,
        services=services,
        findings=visit.findings + tuple(_visit_gaps(visit, services, catalog, policy)),
    )


def with_day_overlaps(
    visits: Sequence[Visit], catalog: Catalog, policy: FindingPolicy
) -> list[Visit]:
    """The day's visits with overlapping time marked across all of them: one patient cannot
    receive two one-on-one services in the same minutes, whichever encounter records them."""
    marked = _with_overlaps(tuple(s for v in visits for s in v.services), catalog, policy)
    out: list[Visit] = []
    start = 0
    for visit in visits:
        end = start + len(visit.services)
        changed = marked[start:end] != visit.services
        out.append(replace(visit, services=marked[start:end]) if changed else visit)
        start = end
    return out


def _checked(service: VisitService) -> bool:
    """Gaps are looked for on what will be billed: completed procedures with a billing code."""
    return service.billable_status and service.code is not None


def _role_held(service: VisitService, catalog: Catalog, payer: Payer) -> VisitService:
    """A timed service whose performer's role cannot be told is held for a payer that applies
    CQ/CO or the episode rules: it may be an assistant's service, which would go out as a
    therapist's (Pub 100-04 ch.5 §20.1); for other payers it stays a warning."""
    if not (payer.assistant_modifiers or payer.plan_of_care_required):
        return service
    if service.code is None or catalog.codes[service.code].kind is CodeKind.UNTIMED:
        return service
    if not any(f.code == "performer-role-unknown" for f in service.findings):
        return service
    why = (
        f" Held for {payer.name}: it may be an assistant's service, which needs "
        f"{'CQ/CO' if payer.assistant_modifiers else 'its discipline'} (Pub 100-04 ch.5 §20.1)."
    )
    return replace(
        service,
        findings=tuple(
            replace(f, severity=Severity.HOLD, message=f.message + why)
            if f.code == "performer-role-unknown" and f.severity is Severity.WARN
            else f
            for f in service.findings
        ),
    )


def _add(service: VisitService, found: list[Finding]) -> VisitService:
    return replace(service, findings=service.findings + tuple(found)) if found else service


def _service_gaps(
    service: VisitService,
    code: str,
    visit: Visit,
    colleagues: ColleagueIndex,
    catalog: Catalog,
    policy: FindingPolicy,
    payer: Payer,
    vocabulary: Vocabulary | None,
) -> list[Finding]:
    definition = catalog.codes[code]
    found = _time_gaps(service, visit, policy) if definition.is_timed else []
    found += _what_gaps(service, definition.is_timed, definition.body_site, policy)
    if definition.is_timed:
        found += documentation_gaps(service, code, policy, vocabulary)
    found += concurrent_gaps(service, visit, colleagues, catalog, policy, payer.group_code)
    found += _necessity_gaps(service, visit, policy)
    found += _who_gaps(service, definition.disciplines, policy)
    if definition.evaluative:
        found += _evaluation_gaps(service, policy)
    if payer.assistant_modifiers and service_shares(service) is None:
        found.append(
            policy.make(
                "assistant-minutes-unknown",
                f"{service.code}: a therapist and an assistant are both performers, without "
                "each one's own period, so the assistant's minutes apart from the therapist "
                "(for CQ/CO) cannot be told.",
                service.reference,
                "Procedure.performer.extension(performer.period)",
            )
        )
    if service.group_subject and definition.kind is CodeKind.TIMED_15:
        found.append(
            policy.make(
                "group-under-individual",
                f"{service.code} is one-on-one, but the procedure's subject is a group.",
                service.reference,
                "Procedure.subject",
            )
        )
    return found


def _time_gaps(service: VisitService, visit: Visit, policy: FindingPolicy) -> list[Finding]:
    """Impossible time: longer than the visit or any plausible session, or outside the visit.

    Source: CMS Pub 100-04 ch.5 §20.3 (only time actually spent treating counts).
    """
    found = []
    ref = service.reference
    if service.minutes is not None and service.minutes > policy.max_service_minutes:
        found.append(
            policy.make(
                "time-too-long",
                f"{service.minutes} minutes is more than the {policy.max_service_minutes}-minute "
                "limit for one service.",
                ref,
                "Procedure.performed[x]",
            )
        )
    length = _minutes_between(visit.start, visit.end)
    if service.minutes is not None and length is not None and service.minutes > length:
        found.append(
            policy.make(
                "time-too-long",
                f"{service.minutes} minutes is longer than the {length}-minute encounter.",
                ref,
                "Procedure.performed[x]",
            )
        )
    if _outside(service, visit):
        found.append(
            policy.make(
                "time-outside-encounter",
                "The service's time falls outside the encounter period.",
                ref,
                "Procedure.performedPeriod",
            )
        )
    return found


def _minutes_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None or end < start:
        return None
    return int((end - start).total_seconds() // 60)


def _outside(service: VisitService, visit: Visit) -> bool:
    if visit.start and service.start and service.start < visit.start:
        return True
    return bool(visit.end and service.end and service.end > visit.end)


def _what_gaps(
    service: VisitService, timed: bool, needs_site: bool, policy: FindingPolicy
) -> list[Finding]:
    """What was done: the activity described; the body part, where the code needs one.

    Source: Pub 100-02 ch.15 §220.3 E (interventions described so they match the codes).
    """
    found = []
    if timed and not any(note.strip() for note in service.notes):
        found.append(
            policy.make(
                "description-missing",
                f"{service.code}: no description of the exercise or activity performed.",
                service.reference,
                "Procedure.note",
            )
        )
    if needs_site and not service.body_sites:
        found.append(
            policy.make(
                "body-site-missing",
                f"{service.code}: no body part recorded.",
                service.reference,
                "Procedure.bodySite",
            )
        )
    return found


def _necessity_gaps(service: VisitService, visit: Visit, policy: FindingPolicy) -> list[Finding]:
    """Medical necessity: a diagnosis the service treats, and a goal or plan of care.

    Source: Pub 100-02 ch.15 §220.1.2 (plan of care: diagnoses, long-term goals), §220.2.
    """
    found = []
    if not service.reasons and not visit.diagnoses:
        found.append(
            policy.make(
                "necessity-missing",
                f"{service.code}: no diagnosis or reason the service treats.",
                service.reference,
                "Procedure.reasonReference",
            )
        )
    unmet = _goal_not_directed(service, visit)
    if unmet:
        found.append(
            policy.make(
                "goal-missing", f"{service.code}: {unmet}", service.reference, "Procedure.basedOn"
            )
        )
    return found


def _goal_not_directed(service: VisitService, visit: Visit) -> str | None:
    """Why the service is not shown goal-directed, or None when it is: it is linked to a plan
    of care, or to a goal that addresses one of the visit's diagnoses (a linked goal that was
    not read is taken at its word), or the patient's active plan of care on the date of service
    addresses a diagnosis (itself or through its goals). A goal linked to nothing does not count.

    Source: Pub 100-02 ch.15 §220.1.2 (the plan of care: diagnoses, long-term goals), §220.2."""
    diagnoses = {d.reference for d in visit.diagnoses if d.reference}
    diagnoses |= {r for r in service.reasons if r.startswith("Condition/")}
    if not diagnoses and (service.based_on or visit.goals):
        return None  # what the goal should address is missing: necessity-missing says so
    goals = {g.reference: g for g in visit.goals}
    linked_goals = [r for r in service.based_on if r.startswith("Goal/")]
    if any(r.startswith("CarePlan/") for r in service.based_on):
        return None
    if any(r not in goals or diagnoses & set(goals[r].addresses) for r in linked_goals):
        return None
    when = service.date or visit.date_of_service
    for plan in visit.care_plans:
        if not plan.active or not _covers(plan.start, plan.end, when):
            continue
        addressed = set(plan.addresses).union(
            *(goals[g].addresses for g in plan.goals if g in goals)
        )
        if diagnoses & addressed:
            return None
    if linked_goals:
        return (
            f"its goal ({', '.join(linked_goals)}) addresses none of the visit's diagnoses, "
            "and no active plan of care of the date does."
        )
    if visit.goals:
        names = ", ".join(g.reference for g in visit.goals[:3])
        return (
            f"linked to no goal or plan of care; the patient's goals ({names}) are linked to "
            "neither the service nor an active plan of care addressing the diagnosis."
        )
    return "no goal or plan of care linked."


def _covers(start: date | None, end: date | None, when: str | None) -> bool:
    if when is None:
        return True
    day = date.fromisoformat(when[:10])
    return (start is None or start <= day) and (end is None or day <= end)


def _evaluation_gaps(service: VisitService, policy: FindingPolicy) -> list[Finding]:
    """An evaluative service (an evaluation, re-evaluation, assessment) that no therapist
    furnished, only an assistant: not billable, whatever supervision is recorded. With a
    therapist among its performers the evaluation is the therapist's and bills.

    Source: Pub 100-02 ch.15 §230.1 B ("PTAs may not provide evaluative or assessment
    services"), §230.2 B (OTAs likewise)."""
    roles = {p.role for p in service.performers}
    if not roles & ASSISTANT_OF.keys() or roles & THERAPIST_OF.keys():
        return []
    return [
        policy.make(
            EVALUATION_BY_ASSISTANT,
            f"{service.code} is an evaluation or assessment, furnished by an assistant with no "
            "therapist: assistants may not provide evaluative or assessment services, so it is "
            "not billable.",
            service.reference,
            "Procedure.performer.function",
        )
    ]


def _who_gaps(
    service: VisitService,
    disciplines: tuple[Discipline, ...],
    policy: FindingPolicy,
) -> list[Finding]:
    """Who furnished the service: someone qualified, of the right discipline, supervised.

    Source: Pub 100-02 ch.15 §220.3 E (who furnished it), §230 (aides, assistants).
    """
    ref = service.reference
    if not service.performers:
        return [
            policy.make(
                "performer-missing",
                f"{service.code}: no performer recorded.",
                ref,
                "Procedure.performer",
            )
        ]
    found = []
    for performer in service.performers:
        if performer.role is Role.AIDE:
            found.append(
                policy.make(
                    "performer-not-qualified",
                    f"{service.code} was furnished by an aide; aide services are not therapy.",
                    ref,
                    "Procedure.performer.function",
                )
            )
        elif (
            performer.role in ROLE_DISCIPLINE and ROLE_DISCIPLINE[performer.role] not in disciplines
        ):
            found.append(
                policy.make(
                    "performer-not-qualified",
                    f"{service.code} is not billed "
                    f"under {ROLE_DISCIPLINE[performer.role]}, the discipline of "
                    f"its {performer.role} performer.",
                    ref,
                    "Procedure.performer.function",
                )
            )
    roles = {p.role for p in service.performers}
    if roles & ASSISTANT_OF.keys() and service.supervisor is None:
        found.append(
            policy.make(
                "supervision-missing",
                f"{service.code} was furnished by an assistant and no supervising therapist is "
                "recorded (on the procedure, the encounter's participants or the assistant's "
                "configured supervisor).",
                ref,
                "Procedure.performer",
            )
        )
    return found


# An overlap is named service by service up to this many; past it, one finding says how many
# services a service overlaps and names the first ones (a day where everything overlaps would
# otherwise be n² findings).
OVERLAPS_NAMED = 3
_MINUTE = timedelta(minutes=1)


def _with_overlaps(
    services: tuple[VisitService, ...], catalog: Catalog, policy: FindingPolicy
) -> tuple[VisitService, ...]:
    """No two services in the same minutes, supervised modalities excepted; both are named.

    Two services overlap when they share at least one whole minute. Found in n log n: services
    in order of start; those that started earlier and still run a minute past this one's start
    are kept in a heap by end, so each service meets only its own overlaps.

    Source: NCCI Policy Manual ch.11 §P item 2; CMS Pub 100-04 ch.5 §20.3.
    """
    timed = sorted(
        (s.start, i, s.end)
        for i, s in enumerate(services)
        if _checked(s)
        and s.start
        and s.end
        and s.end - s.start >= _MINUTE
        and not catalog.codes[s.code or ""].supervised
    )
    starts = [start for start, _, _ in timed]
    running: list[tuple[datetime, int]] = []  # (end, index) of earlier services still running
    extra: dict[int, list[Finding]] = {}
    for position, (start, i, end) in enumerate(timed):
        while running and running[0][0] < start + _MINUTE:
            heapq.heappop(running)
        later = bisect.bisect_right(starts, end - _MINUTE) - position - 1
        partners = sorted(
            [j for _, j in running[:OVERLAPS_NAMED]]
            + [j for _, j, _ in timed[position + 1 : position + 1 + min(later, OVERLAPS_NAMED)]]
        )[:OVERLAPS_NAMED]
        if partners:
            extra[i] = _overlap_findings(services, i, partners, len(running) + later, policy)
        heapq.heappush(running, (end, i))
    return tuple(_add(s, extra.get(i, [])) for i, s in enumerate(services))


def _overlap_findings(
    services: tuple[VisitService, ...],
    index: int,
    partners: list[int],
    count: int,
    policy: FindingPolicy,
) -> list[Finding]:
    this = services[index]

    def overlapping(j: int) -> str:
        other = services[j]
        minutes = _minutes_between(max(this.start, other.start), min(this.end, other.end))  # type: ignore[type-var]
        return f"{other.code} ({other.reference}) by {minutes} minutes"

    if count <= OVERLAPS_NAMED:
        messages = [f"{this.code} overlaps {overlapping(j)}." for j in partners]
    else:
        named = ", ".join(overlapping(j) for j in partners)
        messages = [f"{this.code} overlaps {count} other services, among them {named}."]
    return [
        policy.make("time-overlap", message, this.reference, "Procedure.performedPeriod")
        for message in messages
    ]


def _visit_gaps(
    visit: Visit, services: Iterable[VisitService], catalog: Catalog, policy: FindingPolicy
) -> list[Finding]:
    """Gaps of the visit as a whole: diagnosis, documented totals."""
    found = []
    billed = [s for s in services if _checked(s)]
    if billed and not visit.diagnoses:
        found.append(
            policy.make(
                "diagnosis-missing",
                "The encounter has no diagnosis.",
                visit.encounter,
                "Encounter.diagnosis",
            )
        )
    timed = [s for s in billed if catalog.codes[s.code or ""].is_timed]
    documented = visit.documented_timed_minutes
    total = sum(s.minutes or 0 for s in timed if catalog.codes[s.code or ""].kind in POOLED_KINDS)
    if documented is not None and timed and documented != total:
        found.append(
            policy.make(
                "total-timed-mismatch",
                f"The visit documents {documented} total "
                f"timed minutes; its services add up to {total}.",
                visit.encounter,
                "Encounter.extension(total-timed-minutes)",
            )
        )
    return found


def unit_gaps(
    visit: Visit, units: UnitsResult, table: UnitTable, policy: FindingPolicy
) -> list[Finding]:
    """What the units say about the record: nothing timed billable, or a low minutes per unit.

    Source: CMS Pub 100-04 ch.5 §20.2 C (under 8 total timed minutes nothing is billable; about
    15 minutes of direct contact per unit is expected, a consistently lower average is reviewed).
    """
    found = []
    for group in units.groups:
        minutes, billed = group.total_timed_minutes, group.total_timed_units
        where = f"{group.key.discipline.value} on {group.key.date or 'the visit'}"
        if 0 < minutes < table.first_unit_minutes:
            found.append(
                policy.make(
                    "timed-total-below-8",
                    f"{where}: {minutes} total timed minutes, nothing timed is billable.",
                    visit.encounter,
                    "Procedure.performed[x]",
                )
            )
        if billed and minutes / billed < policy.review_minutes_per_unit:
            found.append(
                policy.make(
                    "review-minutes-per-unit",
                    f"{where}: {minutes} timed minutes "
                    f"for {billed} units, {minutes / billed:.1f} per unit.",
                    visit.encounter,
                    "ChargeItem.quantity",
                )
            )
    return found
