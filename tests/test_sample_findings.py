"""The sample's announced problems are each found, and its clean visits produce no findings."""

from __future__ import annotations

from collections import defaultdict

from fhir_mappings.assemble import VisitAssembler
from plugin.config.files import Settings
from plugin.pipeline import stages
from plugin.pipeline.stages import translate_tables
from plugin.rules.visit import Severity
from plugin.sample import PROBLEM_TAG, PROBLEMS, SampleSpec, generate

# What reading and checking the record must find for each problem the sample plants.
EXPECTED = {
    "no-body-site": "body-site-missing",
    "no-note": "description-missing",
    "no-observation": "measures-missing",
    "no-diagnosis": "diagnosis-missing",
    "no-reason": "necessity-missing",
    "no-goal": "goal-missing",
    "too-long": "time-too-long",
    "outside-encounter": "time-outside-encounter",
    "overlap": "time-overlap",
    "under-8": "timed-total-below-8",
    "total-mismatch": "total-timed-mismatch",
    "no-performer": "performer-missing",
    "aide": "performer-not-qualified",
    "assistant-alone": "supervision-missing",
    "group-session": "group-under-individual",
    "no-time": "time-missing",
    "datetime-only": "time-missing",
    "end-before-start": "time-invalid",
    "no-end": "time-incomplete",
    "unmapped-code": "code-unmapped",
    "not-done": "procedure-not-completed",
    "no-coverage": "coverage-missing",
    "unknown-payer": "payer-unknown",
    "no-performer-role": "performer-role-unknown",
    "vague-note": "description-vague",
    "no-skill": "skill-not-shown",
    "wrong-code": "code-choice-review",
    "concurrent": "concurrent-patients",
    "goal-unlinked": "goal-missing",
}


def test_each_planted_problem_is_found_and_clean_visits_have_no_findings(
    settings: Settings,
) -> None:
    assembler = VisitAssembler(translate_tables(settings))
    tags: dict[str, str | None] = {}
    for resource in generate(SampleSpec(visits=600, seed=11, problem_rate=0.6)):
        assembler.add(resource)
        if resource["resourceType"] == "Encounter":
            tag = [
                t["code"]
                for t in resource.get("meta", {}).get("tag", [])
                if t["system"] == PROBLEM_TAG
            ]
            tags[f"Encounter/{resource['id']}"] = tag[0] if tag else None
    seen: dict[str, int] = defaultdict(int)
    for visit in assembler.visits():
        decision = stages.decide(settings, (visit,))
        found = {f.code for f in decision.findings}
        gaps = {f.code for f in decision.findings if f.severity is not Severity.INFO}
        problem = tags[visit.encounter]
        if problem is None:
            assert gaps == set(), visit.encounter  # a complete record has no gaps at all
            assert found <= {"review-minutes-per-unit"}, visit.encounter  # only notes
        elif problem in EXPECTED:
            assert EXPECTED[problem] in found, (visit.encounter, problem, found)
            seen[problem] += 1
    assert set(EXPECTED) == set(PROBLEMS)  # every problem the sample can plant is checked
    assert set(seen) == set(EXPECTED)  # and every kind was planted at least once
    assert assembler.problems == []
