"""The episode of care around a billing day: the plan of care and its certification, progress
reports every 10 treatment days, and the KX threshold on the year's allowed amounts.

Each reads the patient's history (earlier encounters, care plans, progress reports, charges
of the year), as plain data a caller gathered: from the EHR in one batch of searches, or from
the input file. Sources: Pub 100-02 ch.15 §220.1.2–220.1.3 (plan of care, certification),
§220.3 D (progress reports); Pub 100-04 ch.5 §10.2–10.3 (the KX modifier threshold), SSA
§1833(g) as amended by the Bipartisan Budget Act of 2018 §50202.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

from plugin.rules.findings import FindingPolicy
from plugin.rules.history import CarePlanFacts, History, ReportFacts
from plugin.rules.model import ASSISTANT_OF, THERAPIST_OF, Discipline, Role
from plugin.rules.parameters import DatedParameter, Reference
from plugin.rules.visit import Finding

PLAN_SOURCE = "Pub 100-02 ch.15 §220.1.2, §220.1.3 (plan of care; certification)"
PROGRESS_SOURCE = (
    "Pub 100-02 ch.15 §220.3 D (a clinician's progress report at least every 10 treatment days)"
)
KX_SOURCE = "Pub 100-04 ch.5 §10.2, §10.3 (KX modifier threshold); SSA §1833(g)"

# The KX threshold applies to PT and SLP combined, and to OT apart (Pub 100-04 ch.5 §10.2).
BUCKET = {Discipline.PT: "PT and SLP", Discipline.SLP: "PT and SLP", Discipline.OT: "OT"}
# The plan-of-care modifiers name a prior charge's discipline (Pub 100-04 ch.5 §20.1)
MODIFIER_DISCIPLINE = {"GP": Discipline.PT, "GO": Discipline.OT, "GN": Discipline.SLP}


class KxThreshold(NamedTuple):
    pt_slp: Decimal
    ot: Decimal

    def of(self, discipline: Discipline) -> Decimal:
        return self.ot if discipline is Discipline.OT else self.pt_slp


@dataclass(frozen=True, slots=True)
class EpisodeRules:
    """The episode rules' parameters (config/rules/episode.yaml)."""

    kx_thresholds: DatedParameter[KxThreshold]
    kx_warn_at: Decimal = Decimal("0.9")  # warn once the estimate passes this share
    progress_warn_from: int = 8  # treatment day from which a due report is warned
    progress_hold_after: int = 10  # treatment days a period may last
    report_codes: frozenset[tuple[str, str]] = frozenset()
    lookback_days: int = 120  # how far back a day's history is read
    certify_within_days: int = 30
    plan_max_days: int = 90
    certification_extension: str = ""
    accept_late_days: int = 30  # a delayed certification needs no reason this long after due
    delay_reason_extension: str = ""
    # where a certification is read, first found (fhir_mappings/certification.py)
    certification_routes: tuple[str, ...] = ("document", "provenance", "order", "extension")
    plan_document_codes: frozenset[tuple[str, str]] = frozenset()  # a signed plan's type


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The allowed amount per code, dated (config/fees.yaml, or the admin's stored version)."""

    amounts: Mapping[str, DatedParameter[Decimal]] = field(default_factory=dict)
    currency: str = "USD"
    source: str = ""

    def amount(self, code: str, on: date) -> Decimal | None:
        dated = self.amounts.get(code)
        if dated is None or not dated.in_force(on):
            return None
        return dated.at(on).value


# --- plan of care -------------------------------------------------------------------------------


def plan_of_care_findings(
    discipline: Discipline,
    on: date,
    history: History,
    rules: EpisodeRules,
    policy: FindingPolicy,
    where: str,
) -> list[Finding]:
    """Nothing when a plan of the discipline covers `on`, was certified within 30 days of its
    first treatment and is within 90 days of it; else the one problem of the nearest plan."""
    plans = _plans_of(history, discipline)
    covering = [
        p for p in plans if p.start is not None and p.start <= on and (p.end is None or on <= p.end)
    ]
    if not covering:
        return [
            policy.make(
                "plan-of-care-missing",
                f"No {discipline.value} plan of care covers {on.isoformat()} "
                f"({len(plans)} plan(s) of the patient read).",
                where,
                "CarePlan",
            )
        ]
    problems: list[Finding] = []
    for plan in sorted(covering, key=lambda p: p.start or on, reverse=True):
        found = _plan_problem(plan, on, rules, policy)
        if found is None:
            return []
        problems.append(found)
    return problems[:1]


def certification_note(discipline: Discipline, on: date, history: History) -> str | None:
    """Where the certification of the discipline's plan covering `on` was read (the route and
    the resource), for the explanation; None when no covering plan is certified."""
    for plan in _plans_of(history, discipline):
        covers = (
            plan.start is not None and plan.start <= on and (plan.end is None or on <= plan.end)
        )
        if covers and plan.certified is not None:
            how = f" ({plan.certified_by})" if plan.certified_by else ""
            return f"{plan.reference} was certified on {plan.certified.isoformat()}{how}."
    return None


def _plans_of(history: History, discipline: Discipline) -> list[CarePlanFacts]:
    """The patient's plans of care for the discipline (a plan naming none is everyone's)."""
    return [p for p in history.care_plans if not p.disciplines or discipline in p.disciplines]


def _plan_problem(
    plan: CarePlanFacts, on: date, rules: EpisodeRules, policy: FindingPolicy
) -> Finding | None:
    start = plan.start or on
    due = start + timedelta(days=rules.certify_within_days)
    if (on - start).days >= rules.plan_max_days:
        last = start + timedelta(days=rules.plan_max_days - 1)
        return policy.make(
            "plan-of-care-expired",
            f"{plan.reference} began on {start.isoformat()}; a certification covers at most "
            f"{rules.plan_max_days} calendar days (through {last.isoformat()}), and "
            f"{on.isoformat()} is past it: a recertification is needed.",
            plan.reference,
            "CarePlan.period",
        )
    if plan.certified is None:
        unread = f" Not read: {plan.certified_by}." if plan.certified_by else ""
        return policy.make(
            "plan-of-care-not-certified",
            f"{plan.reference} is not certified; certification is due within "
            f"{rules.certify_within_days} days of the first treatment ({start.isoformat()}), "
            f"by {due.isoformat()}.{unread}",
            plan.reference,
            "CarePlan.extension(certified)",
        )
    late = (plan.certified - start).days
    if late <= rules.certify_within_days:
        return None
    after_due = late - rules.certify_within_days
    said = (
        f"{plan.reference} was certified on {plan.certified.isoformat()}, {late} days after the "
        f"first treatment ({start.isoformat()}), {after_due} day(s) after it was due"
    )
    if after_due <= rules.accept_late_days:
        why = f"within {rules.accept_late_days} days of it, accepted without a reason"
    elif plan.delay_reason:
        why = "accepted with the reason for the delay recorded on the plan"
    else:
        return policy.make(
            "plan-of-care-delay-unexplained",
            f"{said}: more than {rules.accept_late_days} days after it was due, a delayed "
            "certification is accepted with the reason for the delay, and none is recorded.",
            plan.reference,
            "CarePlan.extension(delay reason)",
        )
    return policy.make(
        "plan-of-care-certified-late",
        f"{said}: a delayed certification, {why} (Pub 100-02 ch.15 §220.1.3 D).",
        plan.reference,
        "CarePlan.extension(certified)",
    )


# --- progress reports ---------------------------------------------------------------------------


# Who writes a complete progress report for a discipline's plan (Pub 100-02 ch.15 §220.3 D):
# "a clinician that is, either the physician/NPP who provides or supervises the services, or
# ... the therapist who provides the services and supervises an assistant"; "Reports written by
# assistants are not complete progress reports."


def report_verdict(report: ReportFacts, discipline: Discipline, history: History) -> str | None:
    """None when the report is a complete progress report for the discipline's plan; else why
    it is not. It counts when a therapist of the discipline wrote or signed it off, or a
    physician/NPP did and it is linked to none of the patient's plans or to the discipline's."""
    signers = report.authors + report.cosigners
    if any(THERAPIST_OF.get(role) is discipline for _, role in signers if role):
        return None
    linked = [p for p in history.care_plans if p.reference in report.plans]
    for_discipline = not linked or any(
        not p.disciplines or discipline in p.disciplines for p in linked
    )
    physician = any(role is Role.PHYSICIAN for _, role in signers)
    if physician and for_discipline:
        return None
    roles = [role for _, role in report.authors]
    if any(ASSISTANT_OF.get(role) is discipline for role in roles if role):
        return (
            "written by an assistant and signed off by no therapist of the discipline (reports "
            "written by assistants are not complete progress reports)"
        )
    others = sorted(
        {
            (THERAPIST_OF.get(role) or ASSISTANT_OF.get(role) or discipline).value
            for _, role in signers
            if role in THERAPIST_OF or role in ASSISTANT_OF
        }
    )
    if others or physician:
        whose = " and ".join(others) if others else "another discipline's plan"
        return f"a report for {whose}: each discipline's plan has its own reporting period"
    if not report.authors:
        return "no author recorded (the clinician who wrote it is not known)"
    return "no known role for its author " + ", ".join(ref for ref, _ in report.authors)


class ReportingPeriod(NamedTuple):
    """The progress-reporting period a date of service falls in."""

    start: date  # its first treatment day
    day: int  # which treatment day of it the date of service is
    closed_by: ReportFacts | None  # the complete report that closes it (written on or after)
    after: ReportFacts | None  # the report that closed the period before it
    uncounted: tuple[tuple[ReportFacts, str], ...]  # reports written in it that do not count


def reporting_period(
    discipline: Discipline,
    on: date,
    history: History,
    rules: EpisodeRules,
    episode_start: date | None,
) -> ReportingPeriod:
    """The period `on` falls in (Pub 100-02 ch.15 §220.3 D). The first period begins on the
    first treatment day of the episode (the plan of care's first day; treatment days are read
    `lookback_days` back). Each complete report closes the earliest period open when it was
    written, with every treatment day up to its date — "Date that the report was written (not
    required to be within the reporting period)" — and the next period begins with the next
    treatment day. So a report written after the 10th day closes the period it reports on, and
    the days held in it bill when they are run again."""
    first = on - timedelta(days=rules.lookback_days)
    if episode_start is not None and episode_start > first:
        first = episode_start
    days = sorted(
        {d for d, of in history.treatment_days if (of is None or of is discipline) and first <= d}
        | {on}
    )
    days = [d for d in days if d <= on]
    counted: list[ReportFacts] = []
    uncounted: list[tuple[ReportFacts, str]] = []
    for report in sorted(history.reports, key=lambda r: (r.written, r.reference)):
        if report.written < first:
            continue
        why = report_verdict(report, discipline, history)
        if why is None:
            counted.append(report)
        else:
            uncounted.append((report, why))
    start, after = days[0], None
    for report in counted:
        if report.written < start:
            continue  # written before this period's first day: no period was open
        if on <= report.written:
            return ReportingPeriod(
                start, _days_between(days, start, on), report, after, _within(uncounted, start)
            )
        after = report
        start = next(d for d in days if d > report.written)
    return ReportingPeriod(
        start, _days_between(days, start, on), None, after, _within(uncounted, start)
    )


def _days_between(days: list[date], start: date, end: date) -> int:
    return sum(1 for d in days if start <= d <= end)


def _within(
    uncounted: list[tuple[ReportFacts, str]], start: date
) -> tuple[tuple[ReportFacts, str], ...]:
    return tuple((r, why) for r, why in uncounted if r.written >= start)


def progress_findings(
    discipline: Discipline,
    on: date,
    history: History,
    rules: EpisodeRules,
    policy: FindingPolicy,
    where: str,
) -> list[Finding]:
    plan_start = max(
        (p.start for p in _plans_of(history, discipline) if p.start and p.start <= on),
        default=None,
    )
    period = reporting_period(discipline, on, history, rules, plan_start)
    if period.closed_by is not None:
        return []
    number = period.day
    if period.after is not None:
        since = (
            f"of the {discipline.value} reporting period that began on "
            f"{period.start.isoformat()}, after the progress report {period.after.reference} "
            f"of {period.after.written.isoformat()}"
        )
    else:
        since = (
            f"of the {discipline.value} reporting period that began on "
            f"{period.start.isoformat()} (no complete progress report closes a period before it)"
        )
    not_counted = ""
    if period.uncounted:
        not_counted = (
            " Not counted: "
            + "; ".join(
                f"{r.reference} of {r.written.isoformat()}, {why}" for r, why in period.uncounted
            )
            + "."
        )
    if number > rules.progress_hold_after:
        return [
            policy.make(
                "progress-report-overdue",
                f"{on.isoformat()} is treatment day {number} {since}: a progress report was "
                f"due by the {rules.progress_hold_after}th. A report written now closes the "
                f"period, and its held days bill when they are run again.{not_counted}",
                where,
                "Encounter",
            )
        ]
    if number >= rules.progress_warn_from:
        return [
            policy.make(
                "progress-report-due",
                f"{on.isoformat()} is treatment day {number} {since}: a progress report is "
                f"due by the {rules.progress_hold_after}th treatment day.{not_counted}",
                where,
                "Encounter",
            )
        ]
    return []


# --- the KX threshold ---------------------------------------------------------------------------


class KxEstimate(NamedTuple):
    """The year's allowed amounts for one threshold bucket, as far as the EHR shows them."""

    bucket: str
    threshold: Decimal
    before: Decimal  # earlier dates of service this year
    today: Decimal  # this billing day's lines
    charges: int  # earlier charges counted
    unpriced: int  # earlier charges with no amount and no fee for their code
    decided: int = 0  # of the charges counted, lines of earlier days this run decided

    @property
    def total(self) -> Decimal:
        return self.before + self.today


def kx_estimate(
    discipline: Discipline,
    on: date,
    history: History,
    today: Decimal,
    fees: FeeSchedule,
    rules: EpisodeRules,
) -> KxEstimate | None:
    """None when no threshold is in force on `on`."""
    if not rules.kx_thresholds.in_force(on):
        return None
    bucket = BUCKET[discipline]
    threshold = rules.kx_thresholds.at(on).value.of(discipline)
    before = Decimal(0)
    counted = unpriced = decided = 0
    for charge in history.charges:
        if BUCKET[charge.discipline] != bucket or charge.date.year != on.year or charge.date >= on:
            continue
        amount = charge.amount
        if amount is None:
            fee = fees.amount(charge.code, charge.date)
            amount = fee * charge.units if fee is not None else None
        if amount is None:
            unpriced += 1
            continue
        before += amount
        counted += 1
        decided += charge.decided
    return KxEstimate(bucket, threshold, before, today, counted, unpriced, decided)


def kx_reference(on: date, rules: EpisodeRules) -> Reference:
    return rules.kx_thresholds.at(on).reference


def describe_estimate(estimate: KxEstimate, on: date) -> str:
    unpriced = (
        f", {estimate.unpriced} without a price or fee not counted" if estimate.unpriced else ""
    )
    where = (
        f"{estimate.charges - estimate.decided} earlier charge(s) read and "
        f"{estimate.decided} line(s) of earlier days decided in this run"
        if estimate.decided
        else f"{estimate.charges} earlier charge(s) in the EHR"
    )
    return (
        f"Estimated {on.year} {estimate.bucket} allowed amounts: ${estimate.before:,.2f} on "
        f"{where}{unpriced}, + ${estimate.today:,.2f} "
        f"today = ${estimate.total:,.2f}, against the KX threshold of "
        f"${estimate.threshold:,.2f}. An estimate: charges billed by other providers are not "
        "seen."
    )
