"""How a therapist's charted text is cut before it is read: lines, the label that opens a line
or a sentence ("S:", "Goal:", "NMR –", "Toileting:"), sentences, clauses, and the words of each
with where they were written, so that a finding can quote the words as the therapist wrote them.

Nothing here knows the vocabulary; plugin.rules.activity decides what a label, a clause and a
word mean.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# words, and the arrows charting writes for "increased" and "decreased"
_WORD = re.compile(r"[a-z0-9]+|[↑↓]")

# A sentence ends at . ; ! ? (a full stop followed by a digit is a decimal point: "0.7 m/s")
_SENTENCE = re.compile(r"\.(?!\d)|[;!?]")

# A label opening a line or a sentence: a few words (no digits but a trailing number, "STG 2",
# and a parenthesis, "Ther ex (12 min)") and then a colon, or a dash with a space before and
# after it ("NMR – SLS …", "laundry - transfer …"); a dash label is three words at most.
_LABEL = re.compile(
    r"\s*(?:[-*•·>]+\s+)?"
    r"(?P<label>[A-Za-z][A-Za-z'&/+]*(?:[ -][A-Za-z'&/+]+)*(?: ?#?\d{1,2})?(?: ?\([^)]*\))?)"
    r"(?:\s*:(?=\s|$)|\s+[–—-](?=\s|$)|\s*[–—](?=\s|$))\s*"
)
_LABEL_MARK = re.compile(r"[:–—]|\s-(?:\s|$)")
_BULLET = re.compile(r"\s*[-*•·>]+\s+")
MAX_LABEL_WORDS = 6
MAX_DASH_LABEL_WORDS = 3


# A word as read (lower case, its plural ending dropped) and where it was written:
# (stem, start, end). A plain tuple: a named tuple's constructor would cost a third of reading.
Token = tuple[str, int, int]


def stem(word: str) -> str:
    """The word without its plural ending: "transfers" → "transfer", "activities" →
    "activity", "stretches" → "stretch"; words of three letters or fewer, and those ending in
    "ss", "us" or "is" ("press", "gluteus", "pelvis"), are left alone."""
    if len(word) <= 3 or not word.endswith("s"):
        return word
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    return word[:-1]


# Each word's stem, remembered: notes say the same few thousand words again and again. A dict
# read in the compiled build costs a third of an lru_cache call; bounded, as the cache was.
MAX_STEMS = 65536
_STEMS: dict[str, str] = {}


def tokens(text: str, offset: int = 0) -> list[Token]:
    """The words of a text, lower case and stemmed, with their places (offset added)."""
    stems = _STEMS
    out = []
    for match in _WORD.finditer(text.lower()):
        word = match.group()
        found = stems.get(word)
        if found is None:
            found = stem(word)
            if len(stems) < MAX_STEMS:
                stems[word] = found
        out.append((found, match.start() + offset, match.end() + offset))
    return out


def words(text: str) -> tuple[str, ...]:
    """Lower-case words, stemmed: "Transfers" and "transfer" read alike."""
    return tuple(t[0] for t in tokens(text))


class Label(NamedTuple):
    text: str  # as written
    start: int
    end: int  # where the label (and its colon or dash) ends: the content starts here
    dash: bool


def label_at(text: str, start: int, end: int) -> Label | None:
    """The label opening text[start:end], if any."""
    if not _LABEL_MARK.search(text, start, end):
        return None  # no colon or dash: no label (most sentences; the label pattern costs more)
    match = _LABEL.match(text, start, end)
    if match is None:
        return None
    label = match.group("label")
    count = len(re.sub(r"\([^)]*\)", " ", label).split())
    dash = not match.group().rstrip().endswith(":")
    if count > (MAX_DASH_LABEL_WORDS if dash else MAX_LABEL_WORDS):
        return None
    return Label(label, match.start("label"), match.end(), dash)


def lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-empty line."""
    out = []
    start = 0
    for line in text.split("\n"):
        end = start + len(line)
        if line.strip():
            out.append((start, end))
        start = end + 1
    return out


def is_bullet(text: str, start: int) -> bool:
    return _BULLET.match(text, start) is not None


def sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each sentence of text[start:end]."""
    out = []
    at = start
    for match in _SENTENCE.finditer(text, start, end):
        if text[at : match.start()].strip():
            out.append((at, match.start()))
        at = match.end()
    if text[at:end].strip():
        out.append((at, end))
    return out


def clauses(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each clause of a sentence: cut at commas and at a colon before a space
    ("… to improve safety w/ transfers: mini squats 2x10"), outside parentheses."""
    out = []
    depth = 0
    at = start
    for match in _CLAUSE_MARK.finditer(text, start, end):
        char = match.group()
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            i = match.start()
            if text[at:i].strip():
                out.append((at, i))
            at = i + 1
    if text[at:end].strip():
        out.append((at, end))
    return out


_CLAUSE_MARK = re.compile(r"[(),]|:(?=\s|$)")
