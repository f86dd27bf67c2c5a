"""`theracharge vocabulary evaluate PATH`: how well the documentation reading reads a labelled
corpus of notes (tests/corpus/ is ours: a directory of YAML files, or one file) — the
code-choice review and the two documentation checks (skill-not-shown, measures-missing), each
note read by `plugin.rules.documentation.check_notes` as the decision reads a service's note —
so an admin sees what a vocabulary change does before saving it (`--draft FILE`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import ValidationError

from plugin.errors import UsageError, describe
from plugin.rules.activity import Review, Vocabulary
from plugin.rules.documentation import check_notes
from plugin.schemas.errors import field_errors

# The targets of issue 35, on the held-out part
TARGET_PRECISION = 0.9
TARGET_RECALL = 0.85
TARGET_FALSE_ALARMS = 0.10
TARGET_CHECK_PRECISION = 0.85


@dataclass(frozen=True, slots=True)
class LabelledNote:
    id: str
    billed: str
    note: str
    expect: str  # "right", a code, or "split <code>"
    observations: tuple[str, ...] = ()
    set: str = "tuning"  # "held-out": written before the reading was tuned, never tuned on
    style: str = ""
    skill: bool | None = None  # the note shows a skilled element (None: not labelled)
    measures: bool | None = None  # the note carries an objective measure (None: not labelled)
    code_text: str = ""  # Procedure.code.text as the EHR sent it

    @property
    def wrong(self) -> bool:
        return self.expect != "right"

    @property
    def expected_code(self) -> str | None:
        return None if self.expect == "right" else self.expect.split()[-1]


@dataclass
class CheckCounts:
    """One documentation check (a finding raised when something is missing) on the notes
    labelled for it."""

    raised: int = 0  # notes it was raised on
    right: int = 0  # … that the label says lack it
    lacking: int = 0  # notes the label says lack it

    @property
    def precision(self) -> float:
        return self.right / self.raised if self.raised else 1.0

    @property
    def recall(self) -> float:
        return self.right / self.lacking if self.lacking else 1.0

    def as_json(self) -> dict[str, Any]:
        return {
            "raised": self.raised,
            "right": self.right,
            "lacking": self.lacking,
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
        }


@dataclass
class Evaluation:
    """Counts over the corpus, and the notes read otherwise than labelled."""

    right: int = 0  # notes coded right
    wrong: int = 0  # notes coded wrong (another code, or two activities in one block)
    caught: int = 0  # wrong notes flagged with the right suggestion
    false_alarms: int = 0  # right notes flagged
    flagged: int = 0  # every note flagged
    skill: CheckCounts = field(default_factory=CheckCounts)
    measures: CheckCounts = field(default_factory=CheckCounts)
    misses: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # note id → what was found

    @property
    def recall(self) -> float:
        return self.caught / self.wrong if self.wrong else 1.0

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.right if self.right else 0.0

    @property
    def precision(self) -> float:
        return self.caught / self.flagged if self.flagged else 1.0

    def targets(self) -> dict[str, bool]:
        return {
            "precision": self.precision >= TARGET_PRECISION,
            "recall": self.recall >= TARGET_RECALL,
            "false_alarm_rate": self.false_alarm_rate <= TARGET_FALSE_ALARMS,
            "skill_not_shown_precision": self.skill.precision >= TARGET_CHECK_PRECISION,
            "measures_missing_precision": self.measures.precision >= TARGET_CHECK_PRECISION,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "notes": self.right + self.wrong,
            "coded_right": self.right,
            "coded_wrong": self.wrong,
            "caught": self.caught,
            "false_alarms": self.false_alarms,
            "recall": round(self.recall, 3),
            "precision": round(self.precision, 3),
            "false_alarm_rate": round(self.false_alarm_rate, 3),
            "skill_not_shown": self.skill.as_json(),
            "measures_missing": self.measures.as_json(),
            "targets_met": self.targets(),
            "misses": self.misses,
        }


def load_corpus(path: Path) -> list[LabelledNote]:
    """The labelled notes of a corpus file, or of every *.yaml file of a directory; a malformed
    one is named (exit status 2)."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"{path}: no *.yaml corpus files in this directory")
    out: list[LabelledNote] = []
    seen: set[str] = set()
    for file in files:
        for note in _load_file(file):
            if note.id in seen:
                raise UsageError(f"{file}: note id {note.id!r} is used twice in the corpus")
            seen.add(note.id)
            out.append(note)
    return out


def _load_file(path: Path) -> list[LabelledNote]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the corpus ({exc})") from exc
    notes = raw.get("notes") if isinstance(raw, dict) else None
    if not isinstance(notes, list) or not notes:
        raise UsageError(f"{path}: expected `notes:`, a list of labelled notes")
    style = str(raw.get("style") or path.stem)
    out = []
    for number, item in enumerate(notes, start=1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("id", "billed", "note", "expect")
        ):
            raise UsageError(f"{path}: note {number} needs id, billed, note and expect (strings)")
        for flag in ("skill", "measures"):
            if item.get(flag) is not None and not isinstance(item[flag], bool):
                raise UsageError(f"{path}: note {item['id']}: {flag} must be true or false")
        out.append(
            LabelledNote(
                item["id"],
                item["billed"],
                item["note"],
                item["expect"],
                tuple(str(o) for o in item.get("observations") or ()),
                str(item.get("set") or "tuning"),
                str(item.get("style") or style),
                item.get("skill"),
                item.get("measures"),
                str(item.get("code_text") or ""),
            )
        )
    return out


def load_draft(path: Path) -> Vocabulary:
    """A vocabulary not yet saved (YAML or JSON, the shape of config/rules/activities.yaml and
    of the admin API's `vocabulary`), validated as the admin API validates it."""
    from plugin.schemas.vocabulary import VocabularySchema

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the draft vocabulary ({exc})") from exc
    if isinstance(raw, dict) and isinstance(raw.get("vocabulary"), dict):
        raw = raw["vocabulary"]  # the body of a PUT /admin/api/v1/vocabulary
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: a vocabulary is a mapping (codes, neighbours, concepts …)")
    try:
        vocabulary: Vocabulary = VocabularySchema().load(raw)
    except ValidationError as exc:
        said = describe(field_errors(exc.messages))
        raise UsageError(f"{path}: not a valid vocabulary: {said}") from exc
    return vocabulary


def evaluate(notes: list[LabelledNote], vocabulary: Vocabulary) -> Evaluation:
    """Each note read and checked as the decision reads and checks a service's note."""
    result = Evaluation()
    for note in notes:
        checks = check_notes(note.billed, [note.note], vocabulary, note.observations)
        review = checks.review
        result.outcomes[note.id] = _said(review)
        if review is not None:
            result.flagged += 1
        if note.wrong:
            result.wrong += 1
            if review is not None and _agrees(review, note):
                result.caught += 1
            else:
                result.misses.append(f"{note.id}: expected {note.expect}, {_said(review)}")
        else:
            result.right += 1
            if review is not None:
                result.false_alarms += 1
                result.misses.append(f"{note.id}: expected no finding, {_said(review)}")
        for name, counts, label, raised in (
            ("skill-not-shown", result.skill, note.skill, checks.skill_missing),
            ("measures-missing", result.measures, note.measures, not checks.measured),
        ):
            if label is None:
                continue
            counts.lacking += not label
            counts.raised += raised
            counts.right += raised and not label
            if raised and label:
                result.misses.append(f"{note.id}: {name} raised, the note shows it")
            elif not raised and not label:
                result.misses.append(f"{note.id}: {name} not raised, the note lacks it")
            if raised:
                result.outcomes[note.id] += f"; {name}"
    return result


def evaluate_sets(notes: list[LabelledNote], vocabulary: Vocabulary) -> dict[str, Evaluation]:
    """The whole corpus ("all"), then each set of it apart (held-out last), then each style."""
    sets = {"all": evaluate(notes, vocabulary)}
    names = sorted(dict.fromkeys(n.set for n in notes), key=lambda s: (s == "held-out", s))
    for name in names:
        sets[name] = evaluate([n for n in notes if n.set == name], vocabulary)
    for style in sorted(dict.fromkeys(n.style for n in notes if n.style)):
        sets[f"style {style}"] = evaluate([n for n in notes if n.style == style], vocabulary)
    return sets


def changes(before: Evaluation, after: Evaluation) -> list[str]:
    """The notes a draft reads otherwise: 'id: before → after'."""
    return [
        f"{note}: {was} → {after.outcomes.get(note, '')}"
        for note, was in before.outcomes.items()
        if after.outcomes.get(note) != was
    ]


def _agrees(review: Review, note: LabelledNote) -> bool:
    if review.suggested != note.expected_code:
        return False
    return review.split == note.expect.startswith("split")


def _said(review: Review | None) -> str:
    if review is None:
        return "no finding"
    kind = "split" if review.split else "suggested"
    return f"{kind} {review.suggested} ({', '.join(review.evidence)})"


def evaluation_text(results: dict[str, Evaluation], path: str) -> str:
    """Every set's figures and targets; the notes not as labelled once, under the corpus."""
    parts = [
        _figures(result, f"{path} ({name})")
        for name, result in results.items()
        if not name.startswith("style ")
    ]
    styles = [(name[6:], r) for name, r in results.items() if name.startswith("style ")]
    if styles:
        parts.append(_styles(styles))
    misses = results["all"].misses
    if misses:
        parts.append("Not as labelled:\n" + "".join(f"  {m}\n" for m in misses))
    return "\n".join(parts)


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _figures(result: Evaluation, what: str) -> str:
    met = result.targets()
    lines = [
        f"{what}: {result.right + result.wrong} notes, {result.right} coded right, "
        f"{result.wrong} coded wrong",
        "  code choice (code-choice-review)",
        f"    precision    {result.precision:6.1%}  flags with the labelled suggestion "
        f"({result.caught} of {result.flagged}; target ≥ {TARGET_PRECISION:.0%}: "
        f"{_met(met['precision'])})",
        f"    recall       {result.recall:6.1%}  wrongly coded notes flagged with the right "
        f"suggestion ({result.caught} of {result.wrong}; target ≥ {TARGET_RECALL:.0%}: "
        f"{_met(met['recall'])})",
        f"    false alarms {result.false_alarm_rate:6.1%}  rightly coded notes flagged "
        f"({result.false_alarms} of {result.right}; target ≤ {TARGET_FALSE_ALARMS:.0%}: "
        f"{_met(met['false_alarm_rate'])})",
    ]
    for name, counts, key in (
        ("skill-not-shown", result.skill, "skill_not_shown_precision"),
        ("measures-missing", result.measures, "measures_missing_precision"),
    ):
        lines.append(
            f"  {name:<16} precision {counts.precision:6.1%} ({counts.right} of "
            f"{counts.raised} raised; target ≥ {TARGET_CHECK_PRECISION:.0%}: {_met(met[key])}), "
            f"recall {counts.recall:6.1%} ({counts.right} of {counts.lacking} lacking)"
        )
    return "\n".join(lines) + "\n"


def _styles(styles: list[tuple[str, Evaluation]]) -> str:
    lines = ["By charting style: notes, false alarms, recall, skill / measures precision"]
    for style, r in styles:
        lines.append(
            f"  {style:<10} {r.right + r.wrong:4}  {r.false_alarm_rate:6.1%}  {r.recall:6.1%}  "
            f"{r.skill.precision:6.1%} / {r.measures.precision:6.1%}"
        )
    return "\n".join(lines) + "\n"
