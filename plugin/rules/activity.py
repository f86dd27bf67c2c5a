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
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from plugin.rules import charting
from plugin.rules.charting import Token, words
from plugin.rules.records import Record
from plugin.rules.systems import SNOMED

__all__ = ["words"]


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
PURPOSE, REVIEW, SENSE, STEP, TASK = "purpose", "review", "sense", "step", "task"
# the kinds of a label's terms (Vocabulary.labels) and of an alias (Vocabulary.aliases)
SECTION, HEADING, ALIAS = "section", "heading", "alias"

# What a stretch of charted text is, by the label or section it stands under or the cue in
# its clause. Only treatment ("") is evidence of today's activity.
TREATMENT, REPORT, PLAN, GOAL, ASSESSMENT = "", "report", "plan", "goal", "assessment"
REVIEWED, PURPOSED, CUED, HEADED = "review", "purpose", "cue", "heading"
CONTEXTS = (REPORT, PLAN, GOAL, ASSESSMENT, REVIEWED)
# where a skilled element counts (not in what the patient reports, plans and goals)
_NO_SKILL = frozenset((REPORT, PLAN, GOAL, CUED))
# where numbers count as the service's measure
_MEASURED_IN = frozenset((TREATMENT, ASSESSMENT, HEADED))
WHY_NOT = {
    REPORT: "the patient's report",
    PLAN: "planned",
    GOAL: "a goal",
    ASSESSMENT: "the assessment",
    REVIEWED: "a home programme reviewed",
    PURPOSED: "a purpose",
    CUED: "planned or reported",
}

# Numbers right after an activity's name that make it a measurement, not the exercise:
# "knee flexion 95°", "hip abd 3+/5", "shoulder flexion measured at 120 degrees"
_MEASUREMENT = re.compile(
    r"[\s:=]*(?:(?:l|r|b|bilat|left|right|arom|prom|aarom|rom|active|passive|flex|flexion|ext"
    r"|extension|abd|er|ir|measured|at|of|is|was)\b[\s:=]*){0,3}"
    r"(?:\d+(?:\.\d+)?\s*(?:°|deg\b|degrees?\b)|[0-5][+-]?\s*/\s*5\b)"
    r"|\s*(?:was\s+|is\s+)?measured\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Negation:
    stop: frozenset[str]
    window: int


class StepGroup(NamedTuple):
    """A task of a code whose steps are not a second activity (toileting: the stand pivot to
    the commode; dressing: the stand to pull trousers up)."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The compiled vocabulary: one lexicon of terms by kind (concepts, negation, planning and
    reporting cues, purposes, reviews, word senses, tasks and their steps, skill, vague
    phrases), the aliases (abbreviations and misspellings), the labels of charted sections,
    the neighbour groups, the measure patterns and the review's thresholds."""

    codes: Mapping[str, CodeNote]
    neighbours: Mapping[str, frozenset[str]]  # code → the codes reviewed against it
    lexicon: Terms  # every term of every kind; concept terms carry their Concept
    observation_terms: Terms  # observation name term → Concept
    snomed: Mapping[str, Concept]
    negation: Negation
    # each measure pattern by its kind, in the table's order: searched one after another until
    # one is found, which costs a fraction of an alternation's search when an early one matches
    measure_patterns: tuple[tuple[str, re.Pattern[str]], ...]
    aliases: Terms  # written form → the words it reads as (tuple of stems)
    labels: Terms  # section and heading labels → (context, persistent)
    steps: tuple[StepGroup, ...]
    strong: int = 3
    confidence: float = 0.6
    split_share: float = 0.35
    observation_weight: int = 2

    def measure_kinds(self, text: str) -> list[str]:
        """The kinds of numbers with units in a text (degrees, weight, sets × repetitions …),
        in the table's order."""
        return [name for name, pattern in self.measure_patterns if pattern.search(text)]


class Mention(Record, frozen=True, gc=False):
    """A concept named in a note, as written, and whether it counts as done today."""

    concept: Concept
    text: str
    done: bool
    why_not: str = ""  # "negated", "planned", "a purpose", "equipment" … when not done
    step_of: str = ""  # done as a step of this task of the note (toileting, dressing …)
    step_code: str = ""  # that task's code: the mention is no evidence for another code


class NoteReading(Record, frozen=True, gc=False):
    """One service's documentation as read."""

    mentions: tuple[Mention, ...]
    skilled: tuple[str, ...]  # the skilled elements named, as written
    # words of three letters or more outside vague phrases ("as above"), counted only for a
    # note that names no activity done (0 otherwise)
    content_words: int
    # today's treatment text (not the report, plan or goals), clause by clause: where a
    # measure is looked for, only when no linked Observation measures (measure_kind)
    treatment: str = ""

    @property
    def done(self) -> tuple[Mention, ...]:
        return tuple(m for m in self.mentions if m.done)

    def measure_kind(self, vocabulary: Vocabulary) -> str | None:
        """The kind of the first measure found in today's treatment text, the patterns tried
        one after another in the table's order; None when nothing measures."""
        if not self.treatment:
            return None
        for name, pattern in vocabulary.measure_patterns:
            if pattern.search(self.treatment) is not None:
                return name
        return None


def read_note(texts: Iterable[str], vocabulary: Vocabulary) -> NoteReading:
    """Read a service's note texts: line by line (a label opens a section, a goal, a heading),
    sentence by sentence, clause by clause, each clause in one pass over its words."""
    reader = _Reader(vocabulary)
    for text in texts:
        reader.read(text)
    return reader.result()


class _Reader:
    """The reading of one service's texts, built clause by clause."""

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        self.mentions: list[tuple[Mention, tuple[int, ...]]] = []  # with candidate step groups
        self.skilled: dict[str, None] = {}
        self.tasks: set[int] = set()  # step groups whose task the note does
        self.measured: list[tuple[str, int, int]] = []  # today's treatment text, by clause
        self.text_tokens: list[Token] = []
        self.starts: list[int] = []
        self.unnamed: list[tuple[tuple[str, ...], list[tuple[int, int, object]]]] = []

    def read(self, text: str) -> None:
        section = TREATMENT  # a SOAP section holds until the next one
        # the words of the whole text, abbreviations read once (each keeps its place)
        self.text_tokens = self._aliased(charting.tokens(text))
        self.starts = [t[1] for t in self.text_tokens]
        spans = charting.lines(text)
        multi = len(spans) > 1
        for index, (line_start, line_end) in enumerate(spans):
            if multi and index == 0 and self._heading_line(text, line_start, line_end, section):
                continue
            for start, end in charting.sentences(text, line_start, line_end):
                context, at = section, start
                for _ in range(2):  # "ADL – bathing at tub bench: tub transfer x1 …"
                    label = charting.label_at(text, at, end)
                    if label is None:
                        break
                    kind, persistent = self._classify(label.text)
                    if kind == "content":
                        break
                    self._label_words(text, label.start, label.start + len(label.text), context)
                    if persistent or (kind != HEADED and not text[label.end : line_end].strip()):
                        section = context = kind  # "Goals:" alone: the lines that follow
                    elif kind != HEADED:
                        context = kind  # "Goal: …", "HEP reviewed: …": its own sentence
                    at = label.end
                toks = self._tokens(at, end)
                if not toks:
                    continue
                # one pass over the sentence's words; each clause takes the matches it holds
                seq = tuple(t[0] for t in toks)
                hits = self.vocabulary.lexicon.scan(seq)
                self.unnamed.append((seq, hits.get(VAGUE, [])))
                if not _CLAUSE_CUES.intersection(hits):
                    # no cue whose reach a clause bounds: the sentence reads as one clause
                    self._clause(text, _Clause(toks, seq, hits, 0, len(seq), end), context)
                    continue
                starts = [t[1] for t in toks]
                reviewed = False
                for clause_start, clause_end in charting.clauses(text, at, end):
                    first = bisect_left(starts, clause_start)
                    last = bisect_left(starts, clause_end)
                    if first == last:
                        continue
                    here = REVIEWED if reviewed and context == TREATMENT else context
                    clause = _Clause(toks, seq, hits, first, last, clause_end)
                    reviewed = self._clause(text, clause, here) or reviewed

    def _heading_line(self, text: str, start: int, end: int, context: str) -> bool:
        """A template's heading on the first line ("Therapeutic Exercise"): no evidence."""
        if charting.is_bullet(text, start) or any(c.isdigit() for c in text[start:end]):
            return False
        if self._classify(text[start:end].strip(" :")) != (HEADED, False):
            return False
        self._label_words(text, start, end, context)
        return True

    def _classify(self, label: str) -> tuple[str, bool]:
        """(context, persistent) of a label: a SOAP section (persistent), a goal, plan,
        report, assessment or review label (its own line), a heading (a billing category's
        name: its words are no evidence), or "content" (a label that names the activity)."""
        seq = tuple(t[0] for t in self._aliased(charting.tokens(_PARENTHESIS.sub(" ", label))))
        if not seq:
            return HEADED, False
        hits = self.vocabulary.labels.scan(seq)
        for start, end, value in hits.get(SECTION, ()):
            assert isinstance(value, tuple)
            if start == 0 and end == len(seq):
                return str(value[0]), bool(value[1])
        for _, _, value in hits.get(SECTION, ()):
            assert isinstance(value, tuple)
            if value[0] in (GOAL, PLAN, REVIEWED, REPORT):
                return str(value[0]), False
        covered = {p for s, e, _ in hits.get(HEADING, ()) for p in range(s, e)}
        if all(i in covered or w.isdigit() for i, w in enumerate(seq)):
            return HEADED, False
        return "content", False

    def _label_words(self, text: str, start: int, end: int, context: str) -> None:
        """A label's words: the task it names and the skill it shows, never evidence."""
        toks = self._tokens(start, end)
        hits = self.vocabulary.lexicon.scan(tuple(t[0] for t in toks))
        for _, _, value in hits.get(TASK, ()):
            assert isinstance(value, tuple)
            self.tasks.update(value)
        if context not in _NO_SKILL:
            for s, e, _ in hits.get(SKILL, ()):
                self.skilled[text[toks[s][1] : toks[e - 1][2]]] = None

    def _aliased(self, toks: list[Token]) -> list[Token]:
        """The words with abbreviations and misspellings read as what they stand for; each
        word read keeps the place of what was written."""
        aliases = self.vocabulary.aliases
        seq = tuple(t[0] for t in toks)
        found = aliases.scan(seq).get(ALIAS)
        if not found:
            return toks
        out: list[Token] = []
        at = 0
        for start, end, value in found:
            assert isinstance(value, tuple)
            out += toks[at:start]
            first, last = toks[start], toks[end - 1]
            out += [(str(w), first[1], last[2]) for w in value]
            at = end
        out += toks[at:]
        return out

    def _tokens(self, start: int, end: int) -> list[Token]:
        """The words of the text being read that lie within [start, end)."""
        return self.text_tokens[bisect_left(self.starts, start) : bisect_left(self.starts, end)]

    def _clause(self, text: str, clause: _Clause, context: str) -> bool:
        """Read one clause; True when it opens a review (the rest of the sentence is one)."""
        vocabulary = self.vocabulary
        toks, seq, first, last = clause.toks, clause.seq, clause.first, clause.last
        hits = clause.hits()
        review = REVIEW in hits
        if context == TREATMENT:
            if review:
                context = REVIEWED
            elif SENTENCE in hits:
                context = CUED
        purpose_at = min((s for s, _, _ in hits.get(PURPOSE, ())), default=last)
        negated_at = _negated_positions(seq, hits, vocabulary.negation, first, last)
        senses: dict[int, str] = {}
        for s, e, value in hits.get(SENSE, ()):
            for p in range(s, e):
                senses[p] = str(value)
        steps: dict[tuple[int, int], tuple[int, ...]] = {}
        for s, e, value in hits.get(STEP, ()):
            assert isinstance(value, tuple)
            steps[(s, e)] = value
        if context == TREATMENT:
            for s, e, value in hits.get(TASK, ()):
                assert isinstance(value, tuple)
                if s < purpose_at and not any(p in negated_at for p in range(s, e)):
                    self.tasks.update(value)
        for s, e, value in hits.get(CONCEPT, ()):
            assert isinstance(value, Concept)
            written = text[toks[s][1] : toks[e - 1][2]]
            why = next((senses[p] for p in range(s, e) if p in senses), "")
            if why:
                pass  # what the words are (equipment, a test …) before where they stand
            elif context != TREATMENT:
                why = WHY_NOT.get(context, context)
            elif s >= purpose_at:
                why = WHY_NOT[PURPOSED]
            elif any(p in negated_at for p in range(s, e)):
                why = "negated"
            elif _MEASUREMENT.match(text, toks[e - 1][2], clause.end) is not None:
                why = "a measurement"
            # a step only when a step term covers the whole mention: "car transfer" is no
            # step of bathing though "transfer" is
            groups = tuple(
                dict.fromkeys(
                    g for (a, b), found in steps.items() if a <= s and e <= b for g in found
                )
            )
            self.mentions.append((Mention(value, written, not why, why), groups))
        if context not in _NO_SKILL:
            for s, e, _ in hits.get(SKILL, ()):
                if s < purpose_at:
                    self.skilled[text[toks[s][1] : toks[e - 1][2]]] = None
        if context in _MEASURED_IN:
            limit = toks[purpose_at][1] if purpose_at < last else clause.end
            self.measured.append((text, toks[first][1], limit))
        return review

    def result(self) -> NoteReading:
        steps = self.vocabulary.steps
        mentions = []
        for mention, groups in self.mentions:
            task = next((g for g in groups if g in self.tasks), None)
            if mention.done and task is not None:
                group = steps[task]
                mention = Mention(mention.concept, mention.text, True, "", group.name, group.code)
            mentions.append(mention)
        # words outside vague phrases count only for a note that names no activity done
        content = 0
        if not any(m.done for m in mentions):
            for seq, vague in self.unnamed:
                covered = {p for s, e, _ in vague for p in range(s, e)}
                content += sum(
                    1 for i, w in enumerate(seq) if i not in covered and len(w) >= 3 and w.isalpha()
                )
        treatment = "\n".join(text[start:end] for text, start, end in self.measured)
        return NoteReading(tuple(mentions), tuple(self.skilled), content, treatment)


class _Clause:
    """A clause of a sentence: its words are seq[first:last] of the sentence's words, and the
    sentence's matches that start among them are its own."""

    def __init__(
        self,
        toks: list[Token],
        seq: tuple[str, ...],
        sentence_hits: dict[str, list[tuple[int, int, object]]],
        first: int,
        last: int,
        end: int,
    ) -> None:
        self.toks = toks
        self.seq = seq
        self.sentence_hits = sentence_hits
        self.first = first
        self.last = last
        self.end = end  # where the clause's text ends

    def hits(self) -> dict[str, list[tuple[int, int, object]]]:
        first, last = self.first, self.last
        if first == 0 and last == len(self.seq):
            return self.sentence_hits
        out: dict[str, list[tuple[int, int, object]]] = {}
        for kind, found in self.sentence_hits.items():
            mine = [h for h in found if first <= h[0] < last]
            if mine:
                out[kind] = mine
        return out


# the kinds of cue whose reach ends at a clause's end (negation, plans and reports, purposes,
# reviews): a sentence without any reads the same as one clause
_CLAUSE_CUES = frozenset((BEFORE, AFTER, SENTENCE, PURPOSE, REVIEW))
_PARENTHESIS = re.compile(r"\([^)]*\)")


def _negated_positions(
    seq: tuple[str, ...],
    hits: dict[str, list[tuple[int, int, object]]],
    negation: Negation,
    first: int,
    last: int,
) -> set[int]:
    """Positions a negation cue reaches within its clause (seq[first:last]): up to `window`
    words after a cue before a term, up to `window` words before a cue after one, never across
    a stop word (NegEx-style scope)."""
    reached: set[int] = set()
    for _, end, _ in hits.get(BEFORE, ()):
        for i in range(end, min(last, end + negation.window)):
            if seq[i] in negation.stop:
                break
            reached.add(i)
    for start, _, _ in hits.get(AFTER, ()):
        for i in range(start - 1, max(first - 1, start - 1 - negation.window), -1):
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
    # words of either code read but not counted, and why: '"transfers" (a purpose)'
    set_aside: tuple[str, ...] = ()


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

    set_aside: dict[str, None] = {}
    for mention in reading.mentions:
        code = mention.concept.code
        if code not in neighbours and code != billed:
            continue
        if not mention.done:
            set_aside[f'"{mention.text}" ({mention.why_not})'] = None
        elif mention.step_code and code != mention.step_code:
            set_aside[f'"{mention.text}" (a step of {mention.step_of})'] = None
        else:
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
    # both activities documented: a split only when the other holds a real share of the
    # evidence (a word or two for it beside a full description of the billed one is not a
    # second block); otherwise a recode when the other holds most of it
    split = own >= vocabulary.strong
    if split and share < vocabulary.split_share:
        return None
    if not split and share < vocabulary.confidence:
        return None
    return Review(
        billed,
        best,
        split,
        round(share, 2),
        tuple(evidence.get(best, ())),
        tuple(evidence.get(billed, ())),
        tuple(set_aside)[:MAX_SET_ASIDE],
    )


MAX_SET_ASIDE = 4  # the words not counted that a finding quotes


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
    if review.set_aside:
        message += f" Not counted: {', '.join(review.set_aside)}."
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
