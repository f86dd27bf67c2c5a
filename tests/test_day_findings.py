"""A billing day's findings counted one way everywhere (plugin.render.report
problems_by_encounter): the file report's encounters, the text output, the cards, the run
summary and the worklist's lines all carry the day's own findings (progress reports, the KX
threshold), not only the procedures'."""

from __future__ import annotations

from collections import Counter
from typing import Any

from plugin.config.files import Settings
from plugin.render.cards import gap_cards
from plugin.render.report import (
    RunSummary,
    encounter_reports,
    line_reasons,
    line_warnings,
    visit_text,
)
from plugin.rules.decision import Decision
from tests.test_claim_cases import ClaimCaseSchema, decide_case

EIGHTH_DAY_NEAR_KX: dict[str, Any] = {
    "name": "the 8th treatment day, near the KX threshold",
    "plan_of_care": {"start": "2026-10-01"},
    "history": {
        "reports": ["2026-10-20"],
        "visits": ["2026-10-21", "2026-10-22", "2026-10-23", "2026-10-26", "2026-10-27",
                   "2026-10-28", "2026-10-29"],
        "charges": [{"date": "2026-10-01", "amount": 2421.00}],
    },
    "procedures": [{"code": "97110", "minutes": 30}, {"code": "97530", "start": "09:30",
                                                      "minutes": 30, "role": "OT"}],
    "expect": {"lines": []},
}  # fmt: skip


def _decision(settings: Settings) -> Decision:
    return decide_case(ClaimCaseSchema().load(EIGHTH_DAY_NEAR_KX), settings)


def test_the_days_own_findings_are_under_the_first_encounter_of_the_file_report(
    settings: Settings,
) -> None:
    decision = _decision(settings)
    (entry,) = encounter_reports(decision)
    problems = Counter(p["code"] for p in entry["problems"])
    assert problems["progress-report-due"] == 2  # the PT plan's period and the OT plan's
    assert problems["kx-threshold-near"] == 1  # PT and SLP together: the PT line's bucket
    assert Counter(f.code for f in decision.findings) == problems  # each once, none lost


def test_a_lines_warnings_are_the_day_findings_that_concern_it(settings: Settings) -> None:
    decision = _decision(settings)
    by_code = {ln.code: line_warnings(ln) for ln in decision.lines}
    assert "progress-report-due" in by_code["97110"]
    assert "kx-threshold-near" in by_code["97110"]
    assert "progress-report-due" in by_code["97530"]
    assert "kx-threshold-near" not in by_code["97530"]  # OT's threshold is apart, far from it


def test_the_text_the_cards_and_the_summary_count_the_same_findings(settings: Settings) -> None:
    decision = _decision(settings)
    (entry,) = encounter_reports(decision)
    reported = Counter(p["code"] for p in entry["problems"])
    text = visit_text(decision)
    for code, count in reported.items():
        assert text.count(f" {code}: ") == count, code
    summary = RunSummary()
    summary.add(decision)
    assert summary.findings_by_code == reported
    rows = [{"status": ln.status.value, "warnings": line_warnings(ln)} for ln in decision.lines]
    _, warned = line_reasons(rows)
    assert summary.warnings_by_code == warned
    assert warned["progress-report-due"] == 2
    assert warned["kx-threshold-near"] == 1
    details = "\n".join(c["detail"] for c in gap_cards(decision, "sys"))
    for code, count in reported.items():
        assert details.count(f"({code};") == count, code  # one card line per finding
    assert Counter(f.code for f in decision.findings) == reported


def test_the_cards_name_the_manual_section_of_each_day_finding(settings: Settings) -> None:
    decision = _decision(settings)
    labels = {c["summary"]: c["source"]["label"] for c in gap_cards(decision, "sys")}
    progress = [label for summary, label in labels.items() if "treatment day 8" in summary]
    kx = [label for summary, label in labels.items() if "allowed amounts" in summary]
    assert progress
    assert "Pub 100-02 ch.15 §220.3 D" in progress[0]
    assert kx
    assert "Pub 100-04 ch.5 §10.3" in kx[0]
