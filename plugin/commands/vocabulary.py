"""`theracharge vocabulary evaluate FILE`: how well the code-choice review reads a labelled
corpus of notes (tests/corpus/notes.yaml is ours), so an admin sees what a vocabulary change
does before saving it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plugin.errors import UsageError
from plugin.rules.activity import Review, Vocabulary, read_note, review_code


@dataclass(frozen=True, slots=True)
class LabelledNote:
    id: str
    billed: str
    note: str
    expect: str  # "right", a code, or "split <code>"
    observations: tuple[str, ...] = ()
    set: str = "tuning"  # "held-out": written after the weights were set, never tuned on

    @property
    def wrong(self) -> bool:
        return self.expect != "right"

    @property
    def expected_code(self) -> str | None:
        return None if self.expect == "right" else self.expect.split()[-1]


@dataclass
class Evaluation:
    """Counts over the corpus, and the notes the review got wrong."""

    right: int = 0  # notes coded right
    wrong: int = 0  # notes coded wrong (another code, or two activities in one block)
    caught: int = 0  # wrong notes flagged with the right suggestion
    false_alarms: int = 0  # right notes flagged
    flagged: int = 0  # every note flagged
    misses: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.caught / self.wrong if self.wrong else 1.0

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.right if self.right else 0.0

    @property
    def precision(self) -> float:
        return self.caught / self.flagged if self.flagged else 1.0

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
            "misses": self.misses,
        }


def load_corpus(path: Path) -> list[LabelledNote]:
    """The labelled notes of a corpus file; a malformed one is named (exit status 2)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the corpus ({exc})") from exc
    notes = raw.get("notes") if isinstance(raw, dict) else None
    if not isinstance(notes, list) or not notes:
        raise UsageError(f"{path}: expected `notes:`, a list of labelled notes")
    out = []
    for number, item in enumerate(notes, start=1):
        if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in ("id", "billed", "note", "expect")
        ):
            raise UsageError(f"{path}: note {number} needs id, billed, note and expect (strings)")
        out.append(
            LabelledNote(
                item["id"],
                item["billed"],
                item["note"],
                item["expect"],
                tuple(str(o) for o in item.get("observations") or ()),
                str(item.get("set") or "tuning"),
            )
        )
    return out


def evaluate(notes: list[LabelledNote], vocabulary: Vocabulary) -> Evaluation:
    """Each note reviewed as the decision reviews a service's note."""
    result = Evaluation()
    for note in notes:
        review = review_code(
            note.billed, read_note([note.note], vocabulary), note.observations, (), vocabulary
        )
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
    return result


def evaluate_sets(notes: list[LabelledNote], vocabulary: Vocabulary) -> dict[str, Evaluation]:
    """The whole corpus ("all"), then each set of it apart."""
    sets = {"all": evaluate(notes, vocabulary)}
    for name in dict.fromkeys(n.set for n in notes):
        sets[name] = evaluate([n for n in notes if n.set == name], vocabulary)
    return sets


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
    """Every set's figures; the notes not as labelled once, under the whole corpus."""
    parts = [_figures(result, f"{path} ({name})") for name, result in results.items()]
    misses = results["all"].misses
    if misses:
        parts.append("Not as labelled:\n" + "".join(f"  {m}\n" for m in misses))
    return "".join(parts)


def _figures(result: Evaluation, what: str) -> str:
    lines = [
        f"Code-choice review on {what}: {result.right + result.wrong} notes, "
        f"{result.right} coded right, {result.wrong} coded wrong",
        f"  recall     {result.recall:6.1%}  wrongly coded notes flagged with the right "
        f"suggestion ({result.caught} of {result.wrong}; target ≥ 90 %)",
        f"  precision  {result.precision:6.1%}  flags that were right "
        f"({result.caught} of {result.flagged})",
        f"  false alarms {result.false_alarm_rate:4.1%}  rightly coded notes flagged "
        f"({result.false_alarms} of {result.right}; target ≤ 5 %)",
    ]
    return "\n".join(lines) + "\n"
