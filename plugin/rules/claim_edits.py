"""What makes a day's lines claim-ready, after their units: CQ/CO on assistants' units, the
CMS NCCI edits, the price from the fee schedule, and the episode rules (plan of care, progress
reports, KX). Each step takes the lines and gives them back changed, with its findings and
explanation; plugin.rules.decision runs them in that order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from msgspec.structs import replace

from plugin.rules import assistants, episode
from plugin.rules.episode import EpisodeRules, FeeSchedule
from plugin.rules.findings import FindingPolicy
from plugin.rules.history import History
from plugin.rules.lines import ChargeLine, LineStatus, line_status
from plugin.rules.model import Discipline, Explanation
from plugin.rules.ncci import EditedLine, NcciTables, apply_edits
from plugin.rules.payers import DEFAULT_PAYER, Payer, PayerTable
from plugin.rules.visit import Finding, Severity, Visit


@dataclass(frozen=True, slots=True)
class ClaimTables:
    """The tables that make lines claim-ready: the CMS NCCI edits, the fee schedule, the
    episode rules (plan of care, progress reports, KX), and the payers whose policies say
    which of them apply."""

    edits: NcciTables | None = None
    fees: FeeSchedule | None = None
    episode: EpisodeRules | None = None
    payers: PayerTable | None = None

    def payer(self, payer_id: str | None) -> Payer:
        """The resolved payer of a day whose first visit names `payer_id`."""
        return self.payers.resolved(payer_id) if self.payers is not None else DEFAULT_PAYER


def with_assistant_modifiers(
    lines: tuple[ChargeLine, ...], on: date
) -> tuple[tuple[ChargeLine, ...], tuple[Explanation, ...]]:
    """PT and OT lines with CQ/CO on the units a PTA/OTA furnished in whole or in part
    (plugin.rules.assistants). A line whose units divide keeps the therapist's units and
    gains a line of its own, keyed `…/CQ` (`…/CO`), for the assistant's; each shows the minutes
    of its provider, so the two add up to the documented minutes.

    Source: CMS Pub 100-04 ch.5 §20.1; CY 2022 PFS final rule (86 FR 64996)."""
    out: list[ChargeLine] = []
    notes: list[Explanation] = []
    for line in lines:
        modifier = assistants.MODIFIER.get(line.discipline)
        shares = assistants.line_shares(line.services) if modifier else None
        if modifier is None or shares is None or line.status is LineStatus.NOT_BILLABLE:
            out.append(line)  # unknown shares hold the line (gaps: assistant-minutes-unknown)
            continue
        split = assistants.split_units(line.code, line.kind, line.units, shares, on, modifier)
        notes += (Explanation(n, split.source) for n in split.notes)
        with_modifier = (*line.modifiers, modifier)
        if split.modified == 0:
            out.append(line)
        elif split.modified == line.units:
            out.append(replace(line, modifiers=with_modifier))
        else:
            out.append(replace(line, units=line.units - split.modified, minutes=shares.therapist))
            out.append(
                replace(
                    line,
                    key=f"{line.key}/{modifier}",
                    units=split.modified,
                    minutes=shares.assistant,
                    modifiers=with_modifier,
                )
            )
    return tuple(out), tuple(notes)


# From 2022, a service furnished in whole or in part by an assistant is paid at 85 % of the fee
# schedule amount (SSA §1834(v); 42 CFR 410.59(a)(4), 410.60(a)(4)).
ASSISTANT_PAYMENT = Decimal("0.85")
_ASSISTANT_MODIFIERS = frozenset(assistants.MODIFIER.values())  # CQ, CO
_CENTS = Decimal("0.01")


def priced(line: ChargeLine, fees: FeeSchedule, on: date) -> ChargeLine:
    """The line's allowed amount: units × the fee in force on the date of service (85 % for
    CQ/CO units from 2022); none for a line the fee schedule does not price."""
    fee = fees.amount(line.code, on)
    if fee is None or line.status is LineStatus.NOT_BILLABLE or not line.units:
        return line
    price = fee * line.units
    basis = f"{line.units} × {fee:.2f} {fees.currency} (fee schedule)"
    if on >= assistants.PER_UNIT_FROM and any(m in _ASSISTANT_MODIFIERS for m in line.modifiers):
        price *= ASSISTANT_PAYMENT
        basis += " × 85 % (CQ/CO, 42 CFR 410.59(a)(4), 410.60(a)(4))"
    return replace(line, price=price.quantize(_CENTS), currency=fees.currency, price_basis=basis)


_NECESSITY = ("necessity-missing", "goal-missing")
_REPORT_TYPES = {"Procedure", "Observation", "DocumentReference"}  # where reports are found


def with_episode(
    lines: tuple[ChargeLine, ...],
    claims: ClaimTables,
    on: date,
    visits: list[Visit],
    policy: FindingPolicy,
    payer: Payer,
) -> tuple[tuple[ChargeLine, ...], tuple[Finding, ...], tuple[Explanation, ...]]:
    """Per discipline of the day's billed lines: the plan of care and progress reports its
    payer requires, then the KX threshold per bucket (PT and SLP together, OT apart)."""
    rules = claims.episode
    first = visits[0]
    history = first.history
    assert rules is not None
    billed = [ln for ln in lines if ln.status is not LineStatus.NOT_BILLABLE and ln.units]
    disciplines = list(dict.fromkeys(ln.discipline for ln in billed))
    wanted = payer.plan_of_care_required or payer.progress_reports_required or payer.kx_threshold
    if not disciplines or not wanted:
        return lines, (), ()
    if history is None:
        unread = Explanation(
            "The patient's earlier visits, plan of care and charges were not read: the plan of "
            "care, progress reports and the KX threshold are not checked for this day.",
            episode.PLAN_SOURCE,
        )
        return lines, (), (unread,)
    findings: list[Finding] = []
    notes: list[Explanation] = []
    # the findings that concern each discipline's lines: its holds hold them, its warnings are
    # theirs to show (plan of care, progress reports; KX per bucket)
    concerns: dict[Discipline, list[Finding]] = {}
    missing = set(history.unread)
    # (the payer wants it, the EHR let us read what it needs, what it is)
    checks = (
        (payer.plan_of_care_required, "CarePlan" not in missing, "the plan of care", "CarePlan"),
        (
            payer.progress_reports_required,
            "Encounter" not in missing and not missing.issuperset(_REPORT_TYPES),
            "progress reports",
            "Encounter or progress report",
        ),
        (payer.kx_threshold, "ChargeItem" not in missing, "the KX threshold", "ChargeItem"),
    )
    for wanted_by, readable, rule, kind in checks:
        if wanted_by and not readable:
            notes.append(
                Explanation(
                    f"The EHR does not offer {kind} searches: {rule} is not checked.",
                    episode.PLAN_SOURCE,
                )
            )
    plan_of_care, progress, kx = (wanted and readable for wanted, readable, _, _ in checks)
    for discipline in disciplines:
        found: list[Finding] = []
        if plan_of_care:
            found += episode.plan_of_care_findings(
                discipline, on, history, rules, policy, first.encounter
            )
            said = episode.certification_note(discipline, on, history)
            if said:
                notes.append(Explanation(said, episode.PLAN_SOURCE))
        if progress:
            found += episode.progress_findings(
                discipline, on, history, rules, policy, first.encounter
            )
        found = [policy.for_payer(f, first.payer) for f in found]
        findings += found
        concerns[discipline] = found
    out = list(lines)
    if kx:
        kx_findings, kx_notes = _kx(out, claims, on, history, policy, first, concerns)
        findings += kx_findings
        notes += kx_notes
    for index, line in enumerate(out):
        if line.status is LineStatus.NOT_BILLABLE or not line.units:
            continue
        mine = concerns.get(line.discipline, ())
        warned = tuple(f for f in mine if f.severity is Severity.WARN and f not in line.warnings)
        if warned:
            line = out[index] = replace(line, warnings=line.warnings + warned)
        extra = tuple(f for f in mine if f.severity is Severity.HOLD and f not in line.holds)
        if extra:
            held = line.holds + extra
            status, note = line_status(line, held, first.method)
            out[index] = replace(line, holds=held, status=status, note=note)
    return tuple(out), tuple(findings), tuple(notes)


def _kx(
    lines: list[ChargeLine],
    claims: ClaimTables,
    on: date,
    history: History,
    policy: FindingPolicy,
    visit: Visit,
    concerns: dict[Discipline, list[Finding]],
) -> tuple[list[Finding], list[Explanation]]:
    """KX on every line of a bucket whose estimated year-to-date allowed amounts pass the
    threshold with this day, when the record supports medical necessity; else the lines are
    held. A warning once the estimate nears it. Each finding concerns the bucket's lines
    (added to `concerns`). Source: Pub 100-04 ch.5 §10.3."""
    rules, fees = claims.episode, claims.fees or FeeSchedule()
    assert rules is not None
    findings: list[Finding] = []
    notes: list[Explanation] = []
    by_bucket: dict[str, list[int]] = {}
    for index, line in enumerate(lines):
        if line.status is not LineStatus.NOT_BILLABLE and line.units:
            by_bucket.setdefault(episode.BUCKET[line.discipline], []).append(index)
    for indexes in by_bucket.values():
        today = sum(
            (lines[i].price or Decimal(0) for i in indexes if not _excess(lines[i])), Decimal(0)
        )
        discipline = lines[indexes[0]].discipline
        estimate = episode.kx_estimate(discipline, on, history, today, fees, rules)
        if estimate is None:
            continue
        said = episode.describe_estimate(estimate, on)
        source = f"{episode.KX_SOURCE}; {episode.kx_reference(on, rules).title}"
        found: Finding | None = None
        if estimate.total > estimate.threshold:
            unsupported = sorted(
                {f.code for i in indexes for s in lines[i].services for f in s.findings}
                & set(_NECESSITY)
            )
            if unsupported:
                found = policy.make(
                    "kx-necessity-unsupported",
                    f"{said} Above it KX attests medical necessity, and the record lacks it "
                    f"({', '.join(unsupported)}).",
                    visit.encounter,
                    "Procedure.reasonReference",
                )
            else:
                for i in indexes:
                    if "KX" not in lines[i].modifiers:
                        lines[i] = replace(lines[i], modifiers=(*lines[i].modifiers, "KX"))
                found = policy.make(
                    "kx-threshold-exceeded",
                    f"{said} KX is added to the day's {estimate.bucket} lines.",
                    visit.encounter,
                    "ChargeItem",
                )
                notes.append(Explanation(f"{said} KX is added.", source))
        elif estimate.total >= estimate.threshold * rules.kx_warn_at:
            found = policy.make(
                "kx-threshold-near",
                f"{said} Past it, KX and documented medical necessity are required.",
                visit.encounter,
                "ChargeItem",
            )
            notes.append(Explanation(said, source))
        else:
            notes.append(Explanation(said, source))
        if found is not None:
            found = policy.for_payer(found, visit.payer)
            findings.append(found)
            for member, bucket in episode.BUCKET.items():
                if bucket == estimate.bucket:
                    concerns.setdefault(member, []).append(found)
    return findings, notes


def _excess(line: ChargeLine) -> bool:
    return line.key.endswith("/mue-excess")


def with_ncci_edits(
    lines: tuple[ChargeLine, ...],
    tables: NcciTables,
    on: date,
    visit: Visit,
    policy: FindingPolicy,
    payer: Payer,
) -> tuple[tuple[ChargeLine, ...], tuple[Finding, ...], tuple[Explanation, ...]]:
    """The lines after the NCCI edits: a denied column-two line not billable, a distinct one
    with the payer's modifier (`payer.ptp_modifier`), an undistinguished one held, units over
    an MUE held apart.

    Source: NCCI Policy Manual ch.1 §A, §E; ch.11 §P; CMS MUE program."""
    edited = [
        EditedLine(ln.code, (ln.provider, ln.date), ln.units, ln.services)
        for ln in lines
        if ln.status is not LineStatus.NOT_BILLABLE
    ]
    billed = [ln for ln in lines if ln.status is not LineStatus.NOT_BILLABLE]
    result = apply_edits(edited, tables, on, payer.ptp_modifier, policy, visit.encounter)
    done = {id(ln): ln for ln in lines}
    extra: list[ChargeLine] = []
    for index, (line, edit) in enumerate(zip(billed, edited, strict=True)):
        changed = line
        if edit.not_billable:
            changed = replace(line, status=LineStatus.NOT_BILLABLE, note=edit.not_billable)
        elif edit.units == line.units and not edit.held and not edit.modifiers:
            pass  # no edit touched the line (most lines of most days): kept as it is
        else:
            holds = line.holds + tuple(edit.held)
            kept = replace(line, units=edit.units, holds=holds)
            status, note = line_status(kept, holds, visit.method)
            changed = replace(
                kept, status=status, note=note, modifiers=(*line.modifiers, *edit.modifiers)
            )
        done[id(line)] = changed
        if index in result.excess:
            units, finding = result.excess[index]
            status, note = line_status(changed, (finding,), visit.method)
            extra.append(
                replace(
                    changed,
                    key=f"{line.key}/mue-excess",
                    units=units,
                    holds=(finding,),
                    status=status,
                    note=note,
                )
            )
    edited_lines = tuple(done[id(ln)] for ln in lines) + tuple(extra)
    return edited_lines, tuple(result.findings), tuple(result.explanation)
