"""What a treatment note says was done, read with the admin's vocabulary
(config/rules/activities.yaml): which activities it names (and which it only mentions: negated,
planned, reported), whether it shows a skilled element and an objective measure, and which of
the neighbouring codes the documented activity fits.

Each time block is billed under the code that describes its primary skilled intervention
(CPT 97110–97546 descriptors; Pub 100-02 ch.15 §220.3 E). The review suggests; it never changes
or holds a line by itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from plugin.rules.systems import SNOMED

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"[.;!?\n]+")


def words(text: str) -> tuple[str, ...]:
    """Lower-case words, a final "s" dropped from words longer than three letters (not "ss"):
    "Transfers" and "transfer" read alike."""
    return tuple(_stem(w) for w in _WORD.findall(text.lower()))


def _stem(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


class Concept(NamedTuple):
    """An activity the vocabulary knows: the code it points to and how much it weighs."""

    name: str
    code: str
    weight: int
    source: str


@dataclass(frozen=True, slots=True)
class CodeNote:
    """What a reviewed code is, in the seed's words (the fix of a code-choice finding)."""

    name: str
    distinction: str
    source: str


class Terms:
    """Word sequences looked up by their first word; the longest match at a place wins. A term
    ending in "*" matches any word it begins (single words only)."""

    def __init__(self, entries: Iterable[tuple[str, object]]) -> None:
        self.by_first: dict[str, list[tuple[tuple[str, ...], object]]] = {}
        self.prefixes: list[tuple[str, object]] = []
        for term, value in entries:
            if term.endswith("*") and " " not in term.strip():
                self.prefixes.append((term[:-1].lower(), value))
                continue
            seq = words(term)
            if seq:
                self.by_first.setdefault(seq[0], []).append((seq, value))
        for options in self.by_first.values():
            options.sort(key=lambda o: -len(o[0]))

    def matches(self, seq: Sequence[str]) -> list[tuple[int, int, object]]:
        """(start, end, value) of each match, left to right, longest first, not overlapping."""
        found = []
        i = 0
        while i < len(seq):
            hit = None
            for option, value in self.by_first.get(seq[i], ()):
                if tuple(seq[i : i + len(option)]) == option:
                    hit = (i, i + len(option), value)
                    break
            if hit is None:
                for prefix, value in self.prefixes:
                    if seq[i].startswith(prefix):
                        hit = (i, i + 1, value)
                        break
            if hit is None:
                i += 1
                continue
            found.append(hit)
            i = hit[1]
        return found

    def any_in(self, seq: Sequence[str]) -> bool:
        return bool(self.matches(seq))


@dataclass(frozen=True, slots=True)
class Negation:
    before: Terms
    after: Terms
    sentence: Terms
    stop: frozenset[str]
    window: int


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The compiled vocabulary: concepts by term, the neighbour groups, negation, skill, vague
    phrases, measure patterns and the review's thresholds."""

    codes: Mapping[str, CodeNote]
    neighbours: Mapping[str, frozenset[str]]  # code → the codes reviewed against it
    concepts: Terms  # term → Concept
    observation_terms: Terms  # observation name term → Concept
    snomed: Mapping[str, Concept]
    negation: Negation
    skill: Terms
    vague: Terms
    measures: Mapping[str, re.Pattern[str]]
    strong: int = 3
    confidence: float = 0.6
    observation_weight: int = 2
    covered: frozenset[str] = field(default_factory=frozenset)  # codes with concepts


class Mention(NamedTuple):
    """A concept named in a note, as written, and whether it counts as done today."""

    concept: Concept
    text: str
    done: bool
    why_not: str = ""  # "negated", "planned or reported" when not done


@dataclass(frozen=True, slots=True)
class NoteReading:
    """One service's documentation as read."""

    mentions: tuple[Mention, ...]
    skilled: tuple[str, ...]  # the skilled elements named
    measures: tuple[str, ...]  # the kinds of numbers with units found (degrees, weight …)
    content_words: int  # words of three letters or more outside vague phrases ("as above")

    @property
    def done(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.done)


def read_note(texts: Iterable[str], vocabulary: Vocabulary) -> NoteReading:
    """Read a service's note texts sentence by sentence."""
    mentions: list[Mention] = []
    skilled: list[str] = []
    measures: list[str] = []
    content = 0
    negation = vocabulary.negation
    for text in texts:
        for kind, pattern in vocabulary.measures.items():
            if kind not in measures and pattern.search(text):
                measures.append(kind)
        for sentence in _SENTENCE.split(text):
            seq = words(sentence)
            if not seq:
                continue
            planned = negation.sentence.any_in(seq)
            negated_at = _negated_positions(seq, negation)
            for start, end, value in vocabulary.concepts.matches(seq):
                assert isinstance(value, Concept)
                phrase = " ".join(seq[start:end])
                if planned:
                    mentions.append(Mention(value, phrase, False, "planned or reported"))
                elif any(p in negated_at for p in range(start, end)):
                    mentions.append(Mention(value, phrase, False, "negated"))
                else:
                    mentions.append(Mention(value, phrase, True))
            if not planned:
                skilled += [" ".join(seq[s:e]) for s, e, _ in vocabulary.skill.matches(seq)]
            covered = {p for s, e, _ in vocabulary.vague.matches(seq) for p in range(s, e)}
            content += sum(
                1 for i, w in enumerate(seq) if i not in covered and len(w) >= 3 and w.isalpha()
            )
    return NoteReading(tuple(mentions), tuple(dict.fromkeys(skilled)), tuple(measures), content)


def _negated_positions(seq: Sequence[str], negation: Negation) -> set[int]:
    """Positions a negation cue reaches: up to `window` words after a cue before a term, up to
    `window` words before a cue after one, never across a stop word (NegEx-style scope)."""
    reached: set[int] = set()
    for _, end, _ in negation.before.matches(seq):
        for i in range(end, min(len(seq), end + negation.window)):
            if seq[i] in negation.stop:
                break
            reached.add(i)
    for start, _, _ in negation.after.matches(seq):
        for i in range(start - 1, max(-1, start - 1 - negation.window), -1):
            if seq[i] in negation.stop:
                break
            reached.add(i)
    return reached


class Review(NamedTuple):
    """Which code the documented activity fits, with the evidence that decided it."""

    billed: str
    suggested: str  # the code it fits better, or the second code of a two-activity block
    split: bool  # the note describes both activities: split the time into blocks per code
    confidence: float  # the suggested code's share of the evidence
    evidence: tuple[str, ...]  # the words and concepts for the suggested code
    billed_evidence: tuple[str, ...]


def review_code(
    billed: str,
    reading: NoteReading,
    observation_names: Iterable[str],
    codings: Iterable[tuple[str, str]],
    vocabulary: Vocabulary,
) -> Review | None:
    """The neighbouring code the service's documentation fits better, or both codes when it
    describes two kinds of activity in one block; None when it fits the billed code or says
    too little to tell."""
    neighbours = vocabulary.neighbours.get(billed)
    if not neighbours:
        return None
    scores: dict[str, int] = {}
    evidence: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()

    def add(concept: Concept, what: str, weight: int) -> None:
        if concept.code not in neighbours and concept.code != billed:
            return
        if (concept.code, what) in seen:
            return
        seen.add((concept.code, what))
        scores[concept.code] = scores.get(concept.code, 0) + weight
        evidence.setdefault(concept.code, []).append(what)

    for mention in reading.done:
        add(mention.concept, f'"{mention.text}"', mention.concept.weight)
    for system, code in codings:
        concept = vocabulary.snomed.get(code) if system == SNOMED else None
        if concept is not None:
            add(concept, f"SNOMED CT {code} ({concept.name})", concept.weight)
    for name in observation_names:
        for _, _, value in vocabulary.observation_terms.matches(words(name)):
            assert isinstance(value, Concept)
            add(value, f"the linked measure {name!r}", vocabulary.observation_weight)
    others = [c for c in neighbours if c != billed]
    if not others:
        return None
    best = max(sorted(others), key=lambda c: scores.get(c, 0))  # ties: the lower code
    other, own = scores.get(best, 0), scores.get(billed, 0)
    if other < vocabulary.strong:
        return None
    share = other / (other + own)
    split = own >= vocabulary.strong
    if not split and share < vocabulary.confidence:
        return None
    return Review(
        billed,
        best,
        split,
        round(share, 2),
        tuple(evidence.get(best, ())),
        tuple(evidence.get(billed, ())),
    )


def describe_review(review: Review, vocabulary: Vocabulary) -> tuple[str, str]:
    """(message, fix) of a code-choice finding, in the seed's words."""
    other = vocabulary.codes.get(review.suggested)
    own = vocabulary.codes.get(review.billed)
    other_name = other.name if other else review.suggested
    own_name = own.name if own else review.billed
    said = ", ".join(review.evidence)
    if review.split:
        message = (
            f"{review.billed}: the note describes {own_name} "
            f"({', '.join(review.billed_evidence)}) and {other_name} ({said}) in one time block; "
            f"document the minutes of each and bill the {other_name} minutes as "
            f"{review.suggested}."
        )
    else:
        message = (
            f"{review.billed}: the documented activity ({said}) is {other_name}; it fits "
            f"{review.suggested} better than {review.billed} ({own_name}), "
            f"confidence {review.confidence:.2f}."
        )
    fix = " ".join(
        part
        for part in (
            "Bill each time block under the code of its primary skilled intervention, with its "
            "own minutes; correct the code or the note.",
            other.distinction if other else "",
            own.distinction if own else "",
        )
        if part
    )
    return message, fix
