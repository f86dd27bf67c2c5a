"""The documentation vocabulary: its code-choice review on the labelled corpus, and how notes
are read (negation, plans, reports, skill, measures)."""

from __future__ import annotations

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

CORPUS = Path(__file__).parent / "corpus" / "notes.yaml"


def test_the_corpus_has_80_notes_coded_right_and_wrong_across_pt_and_ot() -> None:
    notes = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))["notes"]
    assert len(notes) >= 80
    assert {n["discipline"] for n in notes} == {"PT", "OT"}
    expects = {n["expect"] == "right" for n in notes}
    assert expects == {True, False}
    assert {"negation", "plan", "report", "mention"} <= {n.get("trap") for n in notes}


def test_the_review_meets_its_targets_on_the_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    """≥ 90 % of wrongly coded notes flagged with the right suggestion, ≤ 5 % false alarms on
    rightly coded ones: the whole corpus and the held-out notes apart."""
    assert main(["vocabulary", "evaluate", str(CORPUS), "--format", "json"]) == 0
    results = orjson.loads(capsys.readouterr().out)
    for name in ("all", "held-out"):
        assert results[name]["recall"] >= 0.9, results[name]
        assert results[name]["false_alarm_rate"] <= 0.05, results[name]
    assert results["held-out"]["notes"] >= 20


def test_the_text_report_names_every_note_not_as_labelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(["vocabulary", "evaluate", str(CORPUS), "--format", "json"])
    misses = orjson.loads(capsys.readouterr().out)["all"]["misses"]
    assert main(["vocabulary", "evaluate", str(CORPUS)]) == 0
    out = capsys.readouterr().out
    assert "recall" in out
    assert "false alarms" in out
    for line in misses:
        assert f"  {line}\n" in out


def test_a_corpus_without_notes_is_refused_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("notes:\n  - {id: a, billed: '97110'}\n", encoding="utf-8")
    assert main(["vocabulary", "evaluate", str(bad)]) == 2
    assert "note 1 needs id, billed, note and expect" in capsys.readouterr().err


def test_a_wrong_label_is_counted_as_a_miss(settings: Settings) -> None:
    """The evaluation can fail: a note labelled against what the review finds is a miss."""
    note = "Single-leg stance on foam 3x30 sec, tandem stance 3x20 sec; VC for posture."
    labelled = [
        LabelledNote("a", "97110", note, "97530"),
        LabelledNote("b", "97112", note, "right"),
    ]
    result = evaluate(labelled, settings.vocabulary)
    assert (result.caught, result.wrong, result.false_alarms) == (0, 1, 0)
    assert result.misses == ['a: expected 97530, suggested 97112 ("single leg stance", "foam", '
                             '"tandem stance", "posture")']  # fmt: skip


@pytest.mark.parametrize(
    ("note", "done", "not_done"),
    [
        (
            "No balance work today. Seated knee extension 3x10.",
            ["seated knee extension"],
            ["balance"],
        ),
        ("SLR 3x10. Balance not addressed today.", ["slr"], ["balance"]),
        ("SLR 3x10. Plan to add SLS on foam next visit.", ["slr"], ["sls", "foam"]),
        ("Pt reports improved balance at home. Bridges 3x10.", ["bridge"], ["balance"]),
        ("No LOB during SLS on foam.", ["sls", "foam"], []),
    ],
)
def test_negated_planned_and_reported_activities_do_not_count(
    note: str, done: list[str], not_done: list[str], settings: Settings
) -> None:
    reading = read_note([note], settings.vocabulary)
    assert [m.text for m in reading.done] == done
    assert [m.text for m in reading.mentions if not m.done] == not_done


def test_skill_and_measures_are_read_from_the_note(settings: Settings) -> None:
    reading = read_note(["Knee flexion 95 deg, MMT 4/5; VC for form, progressed to 3 lb."],
                        settings.vocabulary)  # fmt: skip
    assert set(reading.skilled) == {"vc", "progressed"}
    assert settings.vocabulary.measured(["Tolerated well.", "Knee flexion 95 deg, MMT 4/5."])
    kinds = settings.vocabulary.measure_kinds("Knee flexion 95 deg, MMT 4/5; progressed to 3 lb.")
    assert {"degrees", "muscle-grade", "weight"} <= set(kinds)
    assert not settings.vocabulary.measured(["Tolerated well, 20 minutes", "VC for form"])


def test_a_text_read_after_notes_already_read_reads_as_all_of_them_together(
    settings: Settings,
) -> None:
    """The procedure's own words are read on their own and joined to the notes' reading
    (plugin.rules.documentation): the same reading as all the texts read at once."""
    notes = [n["note"] for n in yaml.safe_load(CORPUS.read_text())["notes"]][:40]
    extra = ["Therapeutic exercise", "gait training", "Tolerated well", "no balance work today"]
    for note, other in zip(notes, extra * 10, strict=True):
        for texts in ([note], ["as above", "see flowsheet"], [note, "Tolerated well"]):
            joined = read_note(texts, settings.vocabulary).followed_by(
                read_note([other], settings.vocabulary)
            )
            assert joined == read_note([*texts, other], settings.vocabulary)


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
