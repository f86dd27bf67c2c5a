"""Documentation that shows the service: each timed service's note names an activity, shows a
skilled element, carries its own objective measure, and describes the activity of the code
billed (Pub 100-02 ch.15 §220.2, §220.3; CPT descriptors). Read with the admin's vocabulary
(plugin.rules.activity, config/rules/activities.yaml).

`check_notes` is the one reading of a service's notes: the decision makes its findings from it
and `theracharge vocabulary evaluate` measures it on the labelled corpus.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from msgspec.structs import replace

from plugin.rules.activity import (
    NoteReading,
    Review,
    Vocabulary,
    describe_review,
    read_note,
    review_code,
)
from plugin.rules.findings import FindingPolicy
from plugin.rules.visit import Finding, VisitService

# A note with no activity concept needs at least this many words of three letters or more,
# besides vague phrases, to count as a description ("x", "as above", "see flowsheet" do not).
MIN_CONTENT_WORDS = 3
MAX_QUOTED = 3  # the activities a skill-not-shown message quotes


class NoteChecks(NamedTuple):
    """What a service's notes show, as the documentation findings read it."""

    reading: NoteReading
    vague: bool  # names no activity and says too little to count as a description
    skill_missing: bool  # describes the activity but shows no skilled element
    measured: bool  # numbers with units of today's treatment (or a linked measure)
    review: Review | None


def check_notes(
    code: str,
    notes: Sequence[str],
    vocabulary: Vocabulary,
    observation_names: Iterable[str] = (),
    codings: Iterable[tuple[str, str]] = (),
    measured_elsewhere: bool = False,
) -> NoteChecks:
    """Read a service's notes (Procedure.note; the charge's own words in Procedure.code.text
    name the billed code and are not read as evidence) and check them."""
    reading = read_note(notes, vocabulary)
    vague = not reading.done and reading.content_words < MIN_CONTENT_WORDS
    review = None
    if not vague:
        review = review_code(code, reading, observation_names, codings, vocabulary)
    return NoteChecks(
        reading,
        vague,
        not vague and not reading.skilled,
        # the note's figures are looked for only when no linked Observation measures
        measured_elsewhere or reading.measure_kind(vocabulary) is not None,
        review,
    )


def documentation_gaps(
    service: VisitService, code: str, policy: FindingPolicy, vocabulary: Vocabulary | None
) -> list[Finding]:
    """What the timed service's own documentation lacks, or says of another code."""
    found = []
    ref = service.reference
    measured = _measured_by_observation(service, vocabulary)
    if vocabulary is None or not any(n.strip() for n in service.notes):
        if not measured:
            found.append(_measures_missing(code, policy, ref))
        return found  # no note at all is description-missing (gaps._what_gaps)
    checks = check_notes(
        code,
        service.notes,
        vocabulary,
        [m.name for m in service.measures if m.name],
        [(c.system, c.code) for c in service.codings],
        measured,
    )
    if not checks.measured:
        found.append(_measures_missing(code, policy, ref, service.notes))
    if checks.vague:
        found.append(
            policy.make(
                "description-vague",
                f"{code}: the note names no exercise or activity ({_quoted(service.notes)}).",
                ref,
                "Procedure.note",
            )
        )
        return found
    if checks.skill_missing:
        named = [f'"{m.text}"' for m in checks.reading.done][:MAX_QUOTED]
        read = f"it names {', '.join(named)} but " if named else ""
        found.append(
            policy.make(
                "skill-not-shown",
                f"{code}: the note shows no skilled element: {read}no instruction, cueing, "
                "progression, modification or assessment of the response.",
                ref,
                "Procedure.note",
            )
        )
    if checks.review is not None:
        message, fix = describe_review(checks.review, vocabulary)
        finding = policy.make("code-choice-review", message, ref, "Procedure.code")
        found.append(
            replace(
                finding,
                fix=f"{fix} {finding.fix}".strip(),
                suggested_code=checks.review.suggested,
            )
        )
    return found


def _measures_missing(
    code: str, policy: FindingPolicy, ref: str, notes: tuple[str, ...] = ()
) -> Finding:
    read = f" in {_quoted(notes)}" if any(n.strip() for n in notes) else ""
    return policy.make(
        "measures-missing",
        f"{code}: no objective measure of its own{read} (an Observation with a value linked to it, "
        "or numbers in today's treatment: degrees, pounds, sets × repetitions, counts, "
        "distances, times to complete, strength grades, scale scores, assistance levels); a "
        'yes/no such as "tolerated", the minutes of the service, or figures in the plan or '
        "goals do not count.",
        ref,
        "Observation.partOf",
    )


def _measured_by_observation(service: VisitService, vocabulary: Vocabulary | None) -> bool:
    """A linked Observation whose value measures (for a string, a number with a unit of the
    vocabulary)."""
    for measure in service.measures:
        if measure.value_kind == "string" and vocabulary is not None:
            if vocabulary.measure_kinds(measure.value_text):
                return True
        elif measure.measures:
            return True
    return False


def _quoted(notes: tuple[str, ...]) -> str:
    text = " ".join(n.strip() for n in notes)
    return f'"{text[:60]}…"' if len(text) > 60 else f'"{text}"'
