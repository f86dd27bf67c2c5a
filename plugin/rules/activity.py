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
from dataclasses import dataclass
from typing import NamedTuple

from plugin.rules.records import Record
from plugin.rules.systems import SNOMED

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"[.;!?\n]+")


def words(text: str) -> tuple[str, ...]:
    """Lower-case words, a final "s" dropped from words longer than three letters (not "ss"):
    "Transfers" and "transfer" read alike."""
    stems = _STEMS
    out = []
    for word in _WORD.findall(text.lower()):
        stem = stems.get(word)
        if stem is None:
            stem = _stem(word)
            if len(stems) < MAX_STEMS:
                stems[word] = stem
        out.append(stem)
    return tuple(out)


# Each word's stem, remembered: notes say the same few thousand words again and again. A dict
# read in the compiled build costs a third of an lru_cache call (reading notes is a sixth of a
# hook call); bounded, as the cache was.
MAX_STEMS = 65536
_STEMS: dict[str, str] = {}


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
    """Word sequences of several kinds (a concept, a negation cue, a skilled element …) looked up
    by their first word, read in one pass over a sentence: within each kind the longest match at
    a place wins and matches do not overlap. A term ending in "*" matches any word it begins
    (single words only)."""

    def __init__(self, entries: Iterable[tuple[str, str, object]]) -> None:
        self.by_first: dict[str, list[tuple[tuple[str, ...], str, object]]] = {}
        self.prefixes: list[tuple[str, str, object]] = []
        for term, kind, value in entries:
            if term.endswith("*") and " " not in term.strip():
                self.prefixes.append((term[:-1].lower(), kind, value))
                continue
            seq = words(term)
            if seq:
                self.by_first.setdefault(seq[0], []).append((seq, kind, value))
        for options in self.by_first.values():
            options.sort(key=lambda o: -len(o[0]))

    def scan(self, seq: tuple[str, ...]) -> dict[str, list[tuple[int, int, object]]]:
        """Kind → (start, end, value) of each match, left to right."""
        found: dict[str, list[tuple[int, int, object]]] = {}
        free: dict[str, int] = {}  # kind → the first position not yet inside one of its matches
        by_first, prefixes = self.by_first, self.prefixes
        for i, word in enumerate(seq):
            options = by_first.get(word)
            if options is None and not prefixes:
                continue
            taken: set[str] = set()
            for option, kind, value in options or ():
                if kind in taken or free.get(kind, 0) > i:
                    continue
                end = i + len(option)
                if seq[i:end] == option:
                    found.setdefault(kind, []).append((i, end, value))
                    free[kind] = end
                    taken.add(kind)
            for prefix, kind, value in prefixes:
                if kind not in taken and free.get(kind, 0) <= i and word.startswith(prefix):
                    found.setdefault(kind, []).append((i, i + 1, value))
                    free[kind] = i + 1
                    taken.add(kind)
        return found

    def matches(self, seq: tuple[str, ...]) -> list[tuple[int, int, object]]:
        """Every match of any kind, left to right."""
        return sorted(m for hits in self.scan(seq).values() for m in hits)


# The kinds of term in a vocabulary's lexicon
CONCEPT, BEFORE, AFTER, SENTENCE, SKILL, VAGUE = (
    "concept", "before", "after", "sentence", "skill", "vague"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Negation:
    stop: frozenset[str]
    window: int


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The compiled vocabulary: one lexicon of terms by kind (concepts, negation, planning and
    reporting cues, skill, vague phrases), the neighbour groups, the measure patterns and the
    review's thresholds."""

    codes: Mapping[str, CodeNote]
    neighbours: Mapping[str, frozenset[str]]  # code → the codes reviewed against it
    lexicon: Terms  # every term of every kind; concept terms carry their Concept
    observation_terms: Terms  # observation name term → Concept
    snomed: Mapping[str, Concept]
    negation: Negation
    measures: re.Pattern[str]  # every measure pattern, each a group named m0, m1 …
    measure_names: tuple[str, ...]  # the measure kinds, in the order of their groups
    strong: int = 3
    confidence: float = 0.6
    observation_weight: int = 2

    def measured(self, texts: Iterable[str]) -> bool:
        """Numbers with units that measure in any of the texts (the vocabulary's patterns)."""
        return any(self.measures.search(text) is not None for text in texts)

    def measure_kinds(self, text: str) -> list[str]:
        """The kinds of numbers with units in a text (degrees, weight, sets × repetitions …)."""
        found: dict[str, None] = {}
        for match in self.measures.finditer(text):
            group = match.lastgroup
            if group is not None:
                found[self.measure_names[int(group[1:])]] = None
        return list(found)


class Mention(Record, frozen=True, gc=False):
    """A concept named in a note, as written, and whether it counts as done today."""

    concept: Concept
    text: str
    done: bool
    why_not: str = ""  # "negated", "planned or reported" when not done


class NoteReading(Record, frozen=True, gc=False):
    """One service's documentation as read."""

    mentions: tuple[Mention, ...]
    skilled: tuple[str, ...]  # the skilled elements named
    # words of three letters or more outside vague phrases ("as above"), counted only for a
    # note that names no activity done (0 otherwise)
    content_words: int

    @property
    def done(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.done)

    def followed_by(self, more: NoteReading) -> NoteReading:
        """The reading of these texts and then `more`'s, as `read_note` of them all would give
        (each text is read on its own): a text added to notes already read is read alone."""
        mentions = self.mentions + more.mentions
        done = any(m.done for m in mentions)
        return NoteReading(
            mentions,
            tuple(dict.fromkeys(self.skilled + more.skilled)),
            0 if done else self.content_words + more.content_words,
        )


def read_note(texts: Iterable[str], vocabulary: Vocabulary) -> NoteReading:
    """Read a service's note texts sentence by sentence, each in one pass over its words."""
    mentions: list[Mention] = []
    skilled: list[str] = []
    unnamed: list[tuple[tuple[str, ...], list[tuple[int, int, object]]]] = []
    negation = vocabulary.negation
    for text in texts:
        for sentence in _SENTENCE.split(text):
            seq = words(sentence)
            if not seq:
                continue
            hits = vocabulary.lexicon.scan(seq)
            planned = SENTENCE in hits
            negated_at = _negated_positions(seq, hits, negation)
            for start, end, value in hits.get(CONCEPT, ()):
                assert isinstance(value, Concept)
                phrase = " ".join(seq[start:end])
                if planned:
                    mentions.append(Mention(value, phrase, False, "planned or reported"))
                elif any(p in negated_at for p in range(start, end)):
                    mentions.append(Mention(value, phrase, False, "negated"))
                else:
                    mentions.append(Mention(value, phrase, True))
            if not planned:
                skilled += [" ".join(seq[s:e]) for s, e, _ in hits.get(SKILL, ())]
            unnamed.append((seq, hits.get(VAGUE, [])))
    # words outside vague phrases count only for a note that names no activity done
    content = 0
    if not any(m.done for m in mentions):
        for seq, vague in unnamed:
            covered = {p for s, e, _ in vague for p in range(s, e)}
            content += sum(
                1 for i, w in enumerate(seq) if i not in covered and len(w) >= 3 and w.isalpha()
            )
    return NoteReading(tuple(mentions), tuple(dict.fromkeys(skilled)), content)


def _negated_positions(
    seq: Sequence[str], hits: dict[str, list[tuple[int, int, object]]], negation: Negation
) -> set[int]:
    """Positions a negation cue reaches: up to `window` words after a cue before a term, up to
    `window` words before a cue after one, never across a stop word (NegEx-style scope)."""
    reached: set[int] = set()
    for _, end, _ in hits.get(BEFORE, ()):
        for i in range(end, min(len(seq), end + negation.window)):
            if seq[i] in negation.stop:
                break
            reached.add(i)
    for start, _, _ in hits.get(AFTER, ()):
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
