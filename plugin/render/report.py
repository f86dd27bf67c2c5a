"""Decisions as a JSON report per encounter and a readable run summary for billing staff."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.rules.decision import Decision
from plugin.rules.lines import ChargeLine, LineStatus
from plugin.rules.visit import SEVERITY_ORDER, Finding, Severity, Visit


def finding_json(item: Finding) -> dict[str, Any]:
    body = {
        "code": item.code,
        "title": item.title or item.code,
        "fixed_by": item.fixed_by,
        "severity": item.severity.value,
        "message": item.message,
        "resource": item.resource,
        "element": item.element,
        "fix": item.fix,
        "source": item.source,
    }
    if item.suggested_code:
        body["suggested_code"] = item.suggested_code
    return body


def ordered_findings(findings: tuple[Finding, ...] | list[Finding]) -> list[Finding]:
    """Most severe first, then in the order found."""
    return sorted(findings, key=lambda f: SEVERITY_ORDER[f.severity])


def line_json(line: ChargeLine) -> dict[str, Any]:
    return {
        "key": line.key,
        "code": line.code,
        "discipline": line.discipline.value,
        "date": line.date,
        "minutes": line.minutes,
        "units": line.units,
        "modifiers": list(line.modifiers),
        "status": line.status.value,
        **(
            {
                "price": f"{line.price:.2f}",
                "currency": line.currency,
                "price_basis": line.price_basis,
            }
            if line.price is not None
            else {}
        ),
        "holds": sorted({h.code for h in line.holds}),
        "warnings": line_warnings(line),
        "therapists": line_therapists(line),
        "supervisors": sorted({s.supervisor for s in line.services if s.supervisor}),
        "note": line.note,
        "procedures": [s.reference for s in line.services],
        "times": line_times(line),
        "label": line.label,
        "context": line.context,
        **({"encounters": list(line.encounters)} if len(line.encounters) > 1 else {}),
        **({"derived_from": line.derived_from} if line.derived_from else {}),
    }


def line_times(line: ChargeLine) -> dict[str, str]:
    """Each procedure's time as documented ("10:00–10:30"), in the record's own offset: how
    people tell a visit's services apart."""
    return {
        s.reference: f"{s.start:%H:%M}–{s.end:%H:%M}"
        for s in line.services
        if s.start is not None and s.end is not None
    }


def line_reasons(lines: Iterable[Mapping[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """Held lines by hold reason, and billable lines with warnings by kind (a line that is not
    billed is not "billed with a warning"): each line counted once per reason. One definition
    for the run summary, the demo report, the worklist and the dashboard, so their counts
    agree."""
    counts = count_lines(lines)
    return counts.held, counts.warned


@dataclass
class LineCounts:
    """A set of charge lines counted as every page and report counts them."""

    statuses: Counter[str] = field(default_factory=Counter)  # lines by ChargeItem status
    billable_units: Counter[str] = field(default_factory=Counter)  # units by code, billable
    held: Counter[str] = field(default_factory=Counter)  # held lines by reason
    warned: Counter[str] = field(default_factory=Counter)  # billable lines by warning


def count_lines(lines: Iterable[Mapping[str, Any]]) -> LineCounts:
    """Lines by status, billable units by code, held lines by reason and billable lines by
    warning: a line held for two reasons counts under each."""
    counts = LineCounts()
    for line in lines:
        status = str(line.get("status"))
        counts.statuses[status] += 1
        if status == "planned":
            counts.held.update(set(line.get("holds") or ()))
        elif status == "billable":
            counts.billable_units[str(line.get("code"))] += int(line.get("units") or 0)
            counts.warned.update(set(line.get("warnings") or ()))
    return counts


def status_words(statuses: Mapping[str, int]) -> str:
    """ "31 billable, 13 held, 2 not billable": lines by status as people say them."""
    return (
        ", ".join(
            f"{statuses[status]} {words}"
            for status, words in STATUS_WORDS.items()
            if statuses.get(status)
        )
        or "none"
    )


def line_warnings(line: ChargeLine) -> list[str]:
    """The warnings that concern a line (billed; someone should look): its procedures' own and
    the day's that concern it (its discipline's progress report, its KX bucket)."""
    own = {f.code for s in line.services for f in s.findings if f.severity is Severity.WARN}
    return sorted(own | {f.code for f in line.warnings if f.severity is Severity.WARN})


def problems_by_encounter(decision: Decision) -> list[tuple[Visit, list[Finding]]]:
    """Every finding of the day (`decision.findings`, which the text output, the cards, the run
    summary and the worklist count) once, under the visit it is reported with: a visit's own
    and its procedures' under that visit, the day's own (the episode rules, the claim edits, a
    line's diagnosis) under the first; each list most severe first."""
    owned: Counter[Finding] = Counter()
    for visit in decision.visits:
        owned.update((*visit.findings, *(f for s in visit.services for f in s.findings)))
    days_own = []
    for item in decision.findings:
        if owned[item] > 0:
            owned[item] -= 1
        else:
            days_own.append(item)
    return [
        (
            visit,
            ordered_findings(
                [*visit.findings, *(f for s in visit.services for f in s.findings)]
                + (days_own if index == 0 else [])
            ),
        )
        for index, visit in enumerate(decision.visits)
    ]


def line_therapists(line: ChargeLine) -> list[dict[str, str]]:
    """Who furnished the line's procedures, as billing staff look them up: name, credential,
    NPI (the reference when the EHR sent no Practitioner)."""
    found: dict[str, dict[str, str]] = {}
    for service in line.services:
        for p in service.performers:
            if p.reference and p.reference not in found:
                found[p.reference] = {
                    "reference": p.reference,
                    "name": p.name,
                    "credential": p.credential,
                    "npi": p.npi,
                }
    return list(found.values())


def _visit_head(visit: Visit) -> dict[str, Any]:
    return {
        "encounter": visit.encounter,
        "patient": visit.patient,
        "patient_name": visit.patient_name,
        "patient_mrn": visit.patient_mrn,
        "patient_birth_date": visit.patient_birth_date,
        "date_of_service": visit.date_of_service,
        "method": visit.method.value,
        "method_reason": visit.method_reason,
        "payer": visit.payer,
        "coverage": visit.coverage,
        "place_of_service": visit.place_of_service,
    }


def day_report(decision: Decision) -> dict[str, Any]:
    """One billing day: its visits, every line, the problems with where they are, the
    explanation. `encounter` is the day's first visit (the one its head fields describe)."""
    return {
        **_visit_head(decision.visit),
        "day": decision.day,
        "encounters": [v.encounter for v in decision.visits],
        "lines": [line_json(line) for line in decision.lines],
        "problems": [finding_json(f) for f in ordered_findings(decision.findings)],
        "alternatives": [dict(a) for a in decision.alternatives],
        "explanation": [{"text": e.text, "source": e.source} for e in decision.explanation],
    }


def encounter_reports(decision: Decision) -> list[dict[str, Any]]:
    """The day as one entry per encounter (the file report's `encounters[]`, which billing
    tools read): each line once, under the encounter that is its ChargeItem's context; each
    problem under the visit it was found in (the day's own under the first); the day's
    alternatives and explanation under the first visit."""
    entries = []
    several = len(decision.visits) > 1
    for index, (visit, found) in enumerate(problems_by_encounter(decision)):
        entry = {
            **_visit_head(visit),
            "lines": [line_json(ln) for ln in decision.lines if ln.context == visit.encounter],
            "problems": [finding_json(f) for f in found],
            "alternatives": [dict(a) for a in decision.alternatives] if index == 0 else [],
            "explanation": [{"text": e.text, "source": e.source} for e in decision.explanation]
            if index == 0
            else [],
        }
        if several:
            entry["billing_day"] = {
                "day": decision.day,
                "encounters": [v.encounter for v in decision.visits],
            }
        entries.append(entry)
    return entries


def by_count(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most frequent first, equal counts by code: the same order however the run was split."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass
class RunSummary:
    """Totals of a run, for the closing summary."""

    visits: int = 0
    days: int = 0
    lines_by_status: Counter[str] = field(default_factory=Counter)
    units_by_code: Counter[str] = field(default_factory=Counter)  # billable and held lines' units
    held_units_by_code: Counter[str] = field(default_factory=Counter)
    findings_by_code: Counter[str] = field(default_factory=Counter)
    holds_by_code: Counter[str] = field(default_factory=Counter)  # held lines, by reason
    warnings_by_code: Counter[str] = field(default_factory=Counter)  # lines warned, by kind
    problems: list[Finding] = field(default_factory=list)  # findings that belong to no visit
    failures: list[str] = field(default_factory=list)

    def add(self, decision: Decision) -> None:
        self.visits += len(decision.visits)
        self.days += 1
        for line in decision.lines:
            self.lines_by_status[line.status.value] += 1
            if line.units and line.status is not LineStatus.NOT_BILLABLE:
                self.units_by_code[line.code] += line.units
                if line.status is LineStatus.PLANNED:
                    self.held_units_by_code[line.code] += line.units
        held, warned = line_reasons(
            {"status": ln.status.value, "holds": [h.code for h in ln.holds],
             "warnings": line_warnings(ln)}
            for ln in decision.lines
        )  # fmt: skip
        self.holds_by_code.update(held)
        self.warnings_by_code.update(warned)
        for item in decision.findings:
            self.findings_by_code[item.code] += 1

    def merge(self, other: RunSummary) -> None:
        """Add another part of the same run's totals (its problems and failures too)."""
        self.visits += other.visits
        self.days += other.days
        for mine, theirs in (
            (self.lines_by_status, other.lines_by_status),
            (self.units_by_code, other.units_by_code),
            (self.held_units_by_code, other.held_units_by_code),
            (self.findings_by_code, other.findings_by_code),
            (self.holds_by_code, other.holds_by_code),
            (self.warnings_by_code, other.warnings_by_code),
        ):
            mine.update(theirs)
        self.problems.extend(other.problems)
        self.failures.extend(other.failures)

    def as_json(self) -> dict[str, Any]:
        return {
            "visits": self.visits,
            "billing_days": self.days,
            "lines_by_status": dict(sorted(self.lines_by_status.items())),
            "units_by_code": dict(sorted(self.units_by_code.items())),
            "held_units_by_code": dict(sorted(self.held_units_by_code.items())),
            "findings_by_code": dict(by_count(self.findings_by_code)),
            "holds_by_code": dict(by_count(self.holds_by_code)),
            "warnings_by_code": dict(by_count(self.warnings_by_code)),
            "problems": [finding_json(f) for f in self.problems],
            "failures": self.failures,
        }


def visit_text(decision: Decision) -> str:
    """A few lines per billing day: its charges, then its problems, most severe first."""
    visit = decision.visit
    names = " + ".join(v.encounter for v in decision.visits)
    out = [f"{names} {visit.date_of_service or 'undated'} ({visit.method.value})"]
    for line in decision.lines:
        mods = "-".join(line.modifiers)
        status = line.status.value
        price = f"  {line.price:>8.2f} {line.currency}" if line.price is not None else ""
        head = f"  {line.code}-{mods:<9} {line.units:>2} unit(s) {line.minutes:>4} min"
        out.append(f"{head}  {status}{price}")
    for item in ordered_findings(decision.findings):
        where = f" [{item.resource}]" if item.resource else ""
        out.append(f"  {item.severity.value:<4} {item.code}: {item.message}{where}")
    return "\n".join(out)


# What people read for each ChargeItem status (FHIR's `planned` is a line held for its record)
STATUS_WORDS = {"billable": "billable", "planned": "held", "not-billable": "not billable"}


def _units(count: int) -> str:
    return f"{count} unit" if count == 1 else f"{count} units"


def summary_text(summary: RunSummary) -> str:
    """The closing summary of a run, in billing staff's words and counted as the pages count
    (plugin.render.report.count_lines): lines by status (held, not FHIR's planned), billable
    units by code (held units said apart), held lines by reason, billable lines with warnings."""
    billable = {
        code: n - summary.held_units_by_code[code]
        for code, n in sorted(summary.units_by_code.items())
        if n - summary.held_units_by_code[code]
    }
    units = ", ".join(f"{code} {_units(n)}" for code, n in billable.items()) or "none"
    held_units = (
        ", ".join(f"{c} {_units(n)}" for c, n in sorted(summary.held_units_by_code.items()) if n)
        or "none"
    )
    holds = ", ".join(f"{c} ({n})" for c, n in by_count(summary.holds_by_code)[:5]) or "none"
    warnings = ", ".join(f"{c} ({n})" for c, n in by_count(summary.warnings_by_code)[:5]) or "none"
    lines = [
        f"visits: {summary.visits} in {summary.days} billing day(s)",
        f"charge lines: {status_words(summary.lines_by_status)}",
        f"billable units by code: {units}; held: {held_units}",
        f"held lines by reason (a line held for two reasons counts under each): {holds}",
        f"lines billed with warnings, by kind: {warnings}",
    ]
    if summary.problems:
        lines.append(f"problems outside any visit: {len(summary.problems)}")
        lines.extend(f"  {p.code}: {p.message} [{p.resource}]" for p in summary.problems[:10])
    if summary.failures:
        lines.append(f"failures: {len(summary.failures)}")
    return "\n".join(lines)
