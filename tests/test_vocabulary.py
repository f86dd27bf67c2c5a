"""The documentation vocabulary: its code-choice review on the labelled corpus, and how notes
are read (negation, plans, reports, skill, measures)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from marshmallow import ValidationError

from plugin.commands.main import main
from plugin.commands.vocabulary import LabelledNote, evaluate
from plugin.config.files import Settings, default_config_dir
from plugin.rules.activity import read_note, review_code
from plugin.rules.visit import Severity
from plugin.schemas.vocabulary import VocabularySchema

CORPUS_DIR = Path(__file__).parent / "corpus"
CORPUS = CORPUS_DIR / "notes.yaml"


def _corpus() -> list[dict[str, Any]]:
    notes = []
    for path in sorted(CORPUS_DIR.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        notes += [{"style": raw.get("style"), **n} for n in raw["notes"]]
    return notes


def test_the_corpus_looks_like_the_world() -> None:
    """≥ 400 notes in five charting styles or more, PT, OT and SLP, every note of the new
    styles with its justification and its skill and measure labels, half the rightly coded
    ones with hard phrasing, a third held out."""
    notes = _corpus()
    assert len(notes) >= 400
    assert len({n["style"] for n in notes}) >= 5
    assert {n["discipline"] for n in notes} == {"PT", "OT", "SLP"}
    assert len({n["id"] for n in notes}) == len(notes)
    labelled = [n for n in notes if n["style"] != "compact"]
    assert all(n.get("why") and isinstance(n.get("skill"), bool) for n in labelled)
    assert all(isinstance(n.get("measures"), bool) for n in labelled)
    right = [n for n in notes if n["expect"] == "right"]
    assert sum(1 for n in right if n.get("hard") or n.get("trap")) >= len(right) / 2
    held = [n for n in notes if n.get("set") == "held-out"]
    assert len(held) >= len(notes) * 0.3
    hard = {n.get("hard") for n in notes}
    assert {"purpose", "goal", "plan", "section", "header", "descriptor", "step", "sense"} <= hard
    assert {"not-a-negation", "measurement", "test-name", "hep-review", "misspelling"} <= hard


def test_the_reading_meets_its_targets_on_the_held_out_part(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 35's targets on the notes never tuned on: code choice precision ≥ 0.9 and recall
    ≥ 0.85, false alarms ≤ 10 %, skill-not-shown and measures-missing precision ≥ 0.85."""
    assert main(["vocabulary", "evaluate", str(CORPUS_DIR), "--format", "json"]) == 0
    results = orjson.loads(capsys.readouterr().out)
    held = results["held-out"]
    assert held["notes"] >= 130
    assert held["targets_met"] == {
        "precision": True,
        "recall": True,
        "false_alarm_rate": True,
        "skill_not_shown_precision": True,
        "measures_missing_precision": True,
    }, held
    assert held["skill_not_shown"]["raised"] >= 10
    assert held["measures_missing"]["raised"] >= 10
    assert {"style flowsheet", "style soap", "style dictation"} <= set(results)


def test_the_text_report_names_every_note_not_as_labelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["vocabulary", "evaluate", str(CORPUS_DIR), "--format", "json"])
    misses = orjson.loads(capsys.readouterr().out)["all"]["misses"]
    assert main(["vocabulary", "evaluate", str(CORPUS_DIR)]) == 0
    out = capsys.readouterr().out
    assert "recall" in out
    assert "false alarms" in out
    assert "(held-out)" in out
    assert "skill-not-shown  precision" in out
    assert "By charting style" in out
    for line in misses:
        assert f"  {line}\n" in out


def test_a_corpus_without_notes_is_refused_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("notes:\n  - {id: a, billed: '97110'}\n", encoding="utf-8")
    assert main(["vocabulary", "evaluate", str(bad)]) == 2
    assert "note 1 needs id, billed, note and expect" in capsys.readouterr().err
    assert main(["vocabulary", "evaluate", str(tmp_path / "empty")]) == 2


def test_a_wrong_label_is_counted_as_a_miss(settings: Settings) -> None:
    """The evaluation can fail: a note labelled against what the review finds is a miss."""
    note = "Single-leg stance on foam 3x30 sec, tandem stance 3x20 sec; VC for posture."
    labelled = [
        LabelledNote("a", "97110", note, "97530", skill=False),
        LabelledNote("b", "97112", note, "right", measures=True),
    ]
    result = evaluate(labelled, settings.vocabulary)
    assert (result.caught, result.wrong, result.false_alarms) == (0, 1, 0)
    assert result.misses == [
        'a: expected 97530, suggested 97112 ("Single-leg stance", "foam", "tandem stance", '
        '"posture")',
        "a: skill-not-shown not raised, the note lacks it",
    ]
    assert (result.skill.lacking, result.skill.raised, result.measures.raised) == (1, 0, 0)


@pytest.mark.parametrize(
    ("note", "done", "not_done"),
    [
        (
            "No balance work today. Seated knee extension 3x10.",
            ["Seated knee extension"],
            [("balance", "negated")],
        ),
        ("SLR 3x10. Balance not addressed today.", ["SLR"], [("Balance", "negated")]),
        (
            "SLR 3x10. Plan to add SLS on foam next visit.",
            ["SLR"],
            [("SLS", "planned or reported"), ("foam", "planned or reported")],
        ),
        (
            "Pt reports improved balance at home. Bridges 3x10.",
            ["Bridges"],
            [("balance", "planned or reported")],
        ),
        ("No LOB during SLS on foam.", ["SLS", "foam"], []),
        # "held" is a stance sustained, not a negation
        ("SLS L held 10 s x5, tandem stance held 30 s.", ["SLS", "tandem stance"], []),
        # a plan voids its own clause, not the sentence
        (
            "EC 3x30 s on foam, will progress to rocker board",
            ["foam"],
            [("rocker board", "planned or reported")],
        ),
        # purpose clauses say why, not what
        (
            "Clams 3x15 for safer transfers, bridges 3x10 to improve dynamic balance",
            ["Clams", "bridges"],
            [("transfers", "a purpose"), ("dynamic balance", "a purpose")],
        ),
        # SOAP sections: S is the patient's report, A the assessment, P the plan
        (
            "S: Pt reports stairs hard.\nO: SLR 3x10.\nA: Gait improving.\nP: Add foam.",
            ["SLR"],
            [("stairs", "the patient's report"), ("Gait", "the assessment"), ("foam", "planned")],
        ),
        ("Goal: indep transfers\nBridges 3x10", ["Bridges"], [("transfers", "a goal")]),
        # a billing category's heading is not evidence; a specific label is
        ("NMR – quad sets 2x15", ["quad sets"], []),
        ("Toileting: clothing mgmt 2/3", ["Toileting", "clothing mgmt"], []),
        # word senses: equipment, a goal's status, a test's name, a measurement
        ("Amb w/ gait belt 150' x3", ["Amb"], [("gait", "equipment")]),
        ("Mobs gr III. STG 1 goal met", ["Mobs", "gr III"], [("met", "a goal's status")]),
        ("5xSTS 14 s; bridges 3x10", ["bridges"], []),
        (
            "Knee flexion 95 deg, heel slides 3x15",
            ["heel slides"],
            [("Knee flexion", "a measurement")],
        ),
        ("Reviewed HEP (bridges, clams) - correct form. SLS 3x10 s", ["SLS"], []),
        (
            "HEP reviewed, bridges, clams; SLS 3x10 s",
            ["SLS"],
            [("bridges", "a home programme reviewed"), ("clams", "a home programme reviewed")],
        ),
        # shorthand, arrows and misspellings read as what they stand for
        ("sit→stand x10, sup>sit x5", ["sit→stand", "sup>sit"], []),
        (
            "propioception and balence, tandum stance",
            ["propioception", "balence", "tandum stance"],
            [],
        ),
        ("Functional activities x10", ["Functional activities"], []),
    ],
)
def test_how_charted_language_is_read(
    note: str, done: list[str], not_done: list[tuple[str, str]], settings: Settings
) -> None:
    reading = read_note([note], settings.vocabulary)
    assert [m.text for m in reading.done] == done
    assert [(m.text, m.why_not) for m in reading.mentions if not m.done] == not_done


def test_steps_of_the_billed_task_are_not_a_second_activity(settings: Settings) -> None:
    """Standing to pull trousers up inside dressing, the stand pivot to the commode inside
    toileting: steps of the 97535 task, no evidence for 97530 — but a car transfer beside
    dressing is a second block."""
    vocabulary = settings.vocabulary
    dressing = read_note(
        ["LB dressing EOB w/ reacher; sit→stand to pull pants up x2 w/ CGA. Cues."], vocabulary
    )
    step = next(m for m in dressing.mentions if m.text == "sit→stand")
    assert (step.done, step.step_of, step.step_code) == (True, "dressing", "97535")
    assert review_code("97535", dressing, (), (), vocabulary) is None
    toileting = read_note(["Toileting: stand pivot w/c→commode, hygiene w/ min A"], vocabulary)
    assert review_code("97535", toileting, (), (), vocabulary) is None
    # a car transfer beside dressing is a second block ("transfer" is a step, a car one is not)
    two = read_note(
        ["LB dressing w/ sock aid + reacher; then car transfer x3, floor transfer x2"], vocabulary
    )
    review = review_code("97535", two, (), (), vocabulary)
    assert review is not None
    assert (review.suggested, review.split) == ("97530", True)
    # bathing billed as 97530: its transfer is part of bathing, so the block is bathing
    bathing = read_note(
        ["Shower transfer w/ tub bench, LH sponge bathing. Instructed."], vocabulary
    )
    review = review_code("97530", bathing, (), (), vocabulary)
    assert review is not None
    assert (review.suggested, review.split) == ("97535", False)
    assert '"Shower transfer" (a step of bathing)' in review.set_aside
    # a task only planned gives no steps
    planned = read_note(["Sit→stand x10, stand pivot x4. Dressing will be addressed."], vocabulary)
    assert all(m.step_of == "" for m in planned.mentions)


def test_a_split_needs_a_real_share_of_the_evidence(settings: Settings) -> None:
    """Both codes documented: a word for the neighbour beside a full description of the billed
    activity is no second block (share below review.split_share); half and half is."""
    vocabulary = settings.vocabulary
    one = read_note(
        ["Floor to waist lift 10# x8, carry 50' x4, push sled. Squat vs stoop."], vocabulary
    )
    assert review_code("97530", one, (), (), vocabulary) is None
    both = read_note(
        ["Bridges 3x12, SLR 3x10, clams; STS x10, car transfer x3, floor transfer"], vocabulary
    )
    review = review_code("97110", both, (), (), vocabulary)
    assert review is not None
    assert (review.suggested, review.split) == ("97530", True)
    assert review.confidence >= vocabulary.split_share
    stricter = dataclasses.replace(vocabulary, split_share=0.55)
    assert review_code("97110", both, (), (), stricter) is None


def test_skill_and_measures_are_read_from_the_note(settings: Settings) -> None:
    reading = read_note(["Knee flexion 95 deg, MMT 4/5; VC for form, progressed to 3 lb."],
                        settings.vocabulary)  # fmt: skip
    assert set(reading.skilled) == {"VC", "progressed"}
    # the first pattern found, in the table's order
    assert reading.measure_kind(settings.vocabulary) == "weight"
    kinds = settings.vocabulary.measure_kinds("Knee flexion 95 deg, MMT 4/5; progressed to 3 lb.")
    assert {"degrees", "muscle-grade", "weight"} <= set(kinds)
    tolerated = read_note(["Tolerated well, 20 minutes", "VC for form"], settings.vocabulary)
    assert tolerated.measure_kind(settings.vocabulary) is None


@pytest.mark.parametrize(
    ("note", "skilled", "measured"),
    [
        ("Quad sets 2x15, SAQ 2#→3#. Prog'd wt, VCs for TKE.", True, True),
        ("bridges 3 by 12, straight leg raise 3 by 10 increased to 2 pounds", True, True),
        ("car transfers three times, floor recovery twice", False, True),
        ("Amb RW 150', CGA. Tol well.", False, True),
        ("Completed in 18 min, ↑ reps today", True, True),
        ("Bridges, clams, SLR. Tol well.", False, False),
        # figures of the plan and the patient's report are not today's measure
        ("S: pain 6/10.\nO: bridges, clams.\nP: progress to 15# 3x10.", False, False),
        ("Bike 12 min", False, False),  # the minutes of the service alone measure nothing
    ],
)
def test_skill_and_measures_in_everyday_shorthand(
    note: str, skilled: bool, measured: bool, settings: Settings
) -> None:
    reading = read_note([note], settings.vocabulary)
    measures = reading.measure_kind(settings.vocabulary) is not None
    assert (bool(reading.skilled), measures) == (skilled, measured)


def test_a_snomed_coding_and_a_linked_measure_are_evidence(settings: Settings) -> None:
    vocabulary = settings.vocabulary
    nothing = read_note(["Done as planned with cues."], vocabulary)
    by_snomed = review_code(
        "97110", nothing, [], [("http://snomed.info/sct", "226049009")], vocabulary
    )
    assert by_snomed is not None
    assert by_snomed.suggested == "97112"
    # a linked Berg score weighs less than a named activity: alone it suggests nothing
    assert review_code("97110", nothing, ["Berg balance score"], [], vocabulary) is None


def test_the_shipped_vocabulary_is_refused_when_a_neighbour_has_no_concept() -> None:
    raw = yaml.safe_load((default_config_dir() / "rules" / "activities.yaml").read_text("utf-8"))
    raw["concepts"] = [c for c in raw["concepts"] if c["code"] != "97124"]
    with pytest.raises(ValidationError, match="97124: a neighbour needs a concept"):
        VocabularySchema().load(raw)


def test_a_measure_pattern_that_is_not_a_regular_expression_is_refused() -> None:
    raw = yaml.safe_load((default_config_dir() / "rules" / "activities.yaml").read_text("utf-8"))
    raw["measures"]["patterns"]["broken"] = "(unclosed"
    with pytest.raises(ValidationError, match="broken: not a regular expression"):
        VocabularySchema().load(raw)


ADMIN = {"Authorization": "Bearer admin-token"}


@pytest.fixture
def admin_app(make_app: Any) -> Any:
    from plugin.config.tokens import token_hash

    return make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('admin-token')}")


def _decide_note(state: Any, note: str, code: str = "97110") -> list[str]:
    from plugin.pipeline.billing_day import decide_gathered
    from tests import builders

    procedure = builders.procedure("p1", code, minutes=20)
    procedure["note"] = [{"text": note}]
    decision = decide_gathered(state.settings, builders.complete_record(procedure), "e1")
    return sorted(f.code for f in decision.findings if f.severity is not Severity.INFO)


def test_an_admin_adds_a_term_through_the_api_and_later_decisions_read_with_it(
    admin_app: Any,
) -> None:
    client = admin_app.test_client()
    state = admin_app.extensions["theracharge"]
    note = "Nordic curls 3x6, instructed in eccentric control."  # "nordic" is not in the table
    assert _decide_note(state, "Nordics 3x6; cued.") == ["description-vague"]
    shipped = client.get("/admin/api/v1/vocabulary", headers=ADMIN)
    assert shipped.status_code == 200
    assert "ETag" not in shipped.headers  # the shipped file, no stored version yet
    content = shipped.json
    strength = next(
        c for c in content["concepts"] if c["name"] == "isolated strengthening exercise"
    )
    strength["terms"].append("nordics")
    answer = client.put(
        "/admin/api/v1/vocabulary",
        json={"reason": "our therapists write Nordics", "vocabulary": content},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.json
    assert answer.json == {"kind": "vocabulary", "name": "activities", "version": 1}
    assert _decide_note(state, "Nordics 3x6; cued.") == []
    assert _decide_note(state, note) == []
    (version,) = client.get("/admin/api/v1/vocabulary/versions", headers=ADMIN).json
    assert version["reason"] == "our therapists write Nordics"
    assert version["diff"] == [
        {
            "change": "changed",
            "concept": "97110 isolated strengthening exercise",
            "terms_added": ["nordics"],
            "terms_removed": [],
        }
    ]
    assert state.settings.versions["vocabulary"] == "v1"
    strength["terms"].remove("nordics")
    client.put(
        "/admin/api/v1/vocabulary",
        json={"reason": "back to the shipped words", "vocabulary": content},
        headers={**ADMIN, "If-Match": 'W/"1"'},
    )
    assert _decide_note(state, "Nordics 3x6; cued.") == ["description-vague"]
    back = client.post(
        "/admin/api/v1/vocabulary/rollback", json={"version": 1, "reason": "undo"}, headers=ADMIN
    )
    assert back.json["version"] == 3
    assert _decide_note(state, "Nordics 3x6; cued.") == []


def test_a_vocabulary_with_a_broken_pattern_is_refused_with_422_and_nothing_stored(
    admin_app: Any,
) -> None:
    client = admin_app.test_client()
    content = client.get("/admin/api/v1/vocabulary", headers=ADMIN).json
    content["measures"]["patterns"]["degrees"] = "(unclosed"
    answer = client.put(
        "/admin/api/v1/vocabulary", json={"reason": "typo", "vocabulary": content}, headers=ADMIN
    )
    assert answer.status_code == 422
    assert any(f.startswith("vocabulary.measures") for f in answer.json["fields"]), answer.json
    assert "degrees: not a regular expression" in str(answer.json["fields"])
    assert client.get("/admin/api/v1/vocabulary/versions", headers=ADMIN).json == []
    not_an_object = client.put(
        "/admin/api/v1/vocabulary",
        json={"reason": "x", "vocabulary": []},
        headers=ADMIN,
    )
    assert not_an_object.status_code == 422
    assert "vocabulary" in not_an_object.json["fields"]


def _findings(settings: Settings, note: str, code: str, code_text: str = "") -> dict[str, str]:
    from plugin.pipeline.billing_day import decide_gathered
    from tests import builders

    procedure = builders.procedure("p1", code, minutes=20)
    procedure["note"] = [{"text": note}]
    if code_text:
        procedure["code"]["text"] = code_text
    decision = decide_gathered(settings, builders.complete_record(procedure), "e1")
    return {f.code: f.message for f in decision.findings if f.severity is not Severity.INFO}


def test_the_charges_own_descriptor_in_code_text_is_not_evidence(settings: Settings) -> None:
    """An EHR that sends the code's descriptor as Procedure.code.text: a recode stays a recode
    (it would read as a second activity of the billed code, a "split", if it counted)."""
    note = "SLS on foam 3x20 s ea, tandem stance EC 3x30 s, rocker board 2 min. Cues."
    plain = _findings(settings, note, "97110")
    described = _findings(settings, note, "97110", "THERAPEUTIC EXERCISES EA 15 MIN")
    assert plain == described
    assert "it fits 97112 better than 97110" in described["code-choice-review"]


def test_each_finding_quotes_the_words_that_decided_it(settings: Settings) -> None:
    recode = _findings(
        settings,
        "Hip abd SL 3x10, clams RTB 3x15, bridges 3x10 - for safer transfers and stair "
        "climbing. Sit→stand x10 to improve hip strength.",
        "97530",
    )["code-choice-review"]
    assert 'therapeutic exercise ("Hip abd", "clams", "RTB"' in recode
    assert 'Not counted: "transfers" (a purpose)' in recode
    skill = _findings(settings, "Bridges 3x10, clams 3x15, SLR 3x10. Tol well.", "97110")
    assert skill["skill-not-shown"].startswith(
        '97110: the note shows no skilled element: it names "Bridges", "clams", "SLR" but no'
    )


def test_measures_missing_quotes_the_note_it_read(settings: Settings) -> None:
    from plugin.pipeline.billing_day import decide_gathered
    from tests import builders

    procedure = builders.procedure("p1", "97110", minutes=20)
    procedure["note"] = [{"text": "Bridges, clams. VC for form.\nP: progress to 3x15"}]
    record = [r for r in builders.complete_record(procedure) if r["resourceType"] != "Observation"]
    decision = decide_gathered(settings, record, "e1")
    (said,) = [f.message for f in decision.findings if f.code == "measures-missing"]
    assert said.startswith('97110: no objective measure of its own in "Bridges, clams. VC')
    assert "figures in the plan or goals do not count" in said


def test_an_admin_tries_a_draft_with_an_abbreviation_before_saving_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vocabulary evaluate --draft`: the vocabulary in force and the draft side by side, and
    the notes the draft reads otherwise."""
    corpus = tmp_path / "ours.yaml"
    corpus.write_text(
        "style: ours\nnotes:\n"
        "  - {id: o1, billed: '97110', expect: '97112', skill: true, measures: true,\n"
        "     note: 'Wobbly stance 3x30 s, cues for trunk'}\n",
        encoding="utf-8",
    )
    raw = yaml.safe_load((default_config_dir() / "rules" / "activities.yaml").read_text("utf-8"))
    raw["aliases"]["entries"].append({"reads": "perturbation", "written": ["wobbly stance"]})
    draft = tmp_path / "draft.yaml"
    draft.write_text(yaml.safe_dump({"reason": "our words", "vocabulary": raw}), encoding="utf-8")
    assert main(["vocabulary", "evaluate", str(corpus), "--draft", str(draft)]) == 0
    out = capsys.readouterr().out
    assert "The vocabulary in force" in out
    assert f"The draft {draft}" in out
    assert "Notes the draft reads otherwise (1):" in out
    assert '  o1: no finding → suggested 97112 ("Wobbly stance")' in out
    raw["senses"]["entries"].append({"name": "broken"})  # no terms
    draft.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["vocabulary", "evaluate", str(corpus), "--draft", str(draft)]) == 2
    number = len(raw["senses"]["entries"]) - 1
    assert f"not a valid vocabulary: senses.entries[{number}].terms: Missing data" in (
        capsys.readouterr().err
    )


def test_a_vocabulary_stored_before_the_new_tables_still_loads() -> None:
    """A version an admin saved before aliases, senses, steps and sections existed: read as
    empty tables, not refused."""
    raw = yaml.safe_load((default_config_dir() / "rules" / "activities.yaml").read_text("utf-8"))
    for key in ("aliases", "senses", "steps", "sections", "context"):
        del raw[key]
    del raw["review"]["split_share"]
    vocabulary = VocabularySchema().load(raw)
    assert vocabulary.steps == ()
    assert vocabulary.split_share == 0.35
    assert [m.text for m in read_note(["SLR 3x10"], vocabulary).done] == ["SLR"]


def test_an_admin_adds_a_sense_rule_through_the_api(admin_app: Any) -> None:
    client = admin_app.test_client()
    state = admin_app.extensions["theracharge"]
    note = (
        "Sit to stand x10, car transfer x3, floor to waist lift 10# x8; kettlebell squat belt. VC."
    )
    assert _decide_note(state, note, "97530") == []
    content = client.get("/admin/api/v1/vocabulary", headers=ADMIN).json
    content["senses"]["entries"].append({"name": "equipment", "terms": ["transfer belt"]})
    content["aliases"]["entries"].append({"reads": "transfer belt", "written": ["squat belt"]})
    answer = client.put(
        "/admin/api/v1/vocabulary",
        json={"reason": "squat belt is a transfer belt", "vocabulary": content},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.json
    (version,) = client.get("/admin/api/v1/vocabulary/versions", headers=ADMIN).json
    assert {"change": "changed", "section": "aliases"} in version["diff"]
    assert {"change": "changed", "section": "senses"} in version["diff"]
    reading = read_note([note], state.settings.vocabulary)
    assert ("squat belt", "equipment") in [(m.text, m.why_not) for m in reading.mentions]
