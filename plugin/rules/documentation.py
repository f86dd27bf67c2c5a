"""Documentation that shows the service: each timed service's note names an activity, shows a
skilled element, carries its own objective measure, and describes the activity of the code
billed (Pub 100-02 ch.15 §220.2, §220.3; CPT descriptors). Read with the admin's vocabulary
(plugin.rules.activity, config/rules/activities.yaml).
"""

from __future__ import annotations

from msgspec.structs import replace

from plugin.rules.activity import (
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


def documentation_gaps(
    service: VisitService, code: str, policy: FindingPolicy, vocabulary: Vocabulary | None
) -> list[Finding]:
    """What the timed service's own documentation lacks, or says of another code."""
    found = []
    ref = service.reference
    if vocabulary is not None and any(n.strip() for n in service.notes):
        reading = read_note(service.notes, vocabulary)
    else:
        reading = None
    if not _measured(service, vocabulary):
        found.append(
            policy.make(
                "measures-missing",
                f"{code}: no objective measure of its own (an Observation with a value linked "
                "to it, or numbers with units in its note: degrees, pounds, sets × "
                "repetitions, strength grades, scale scores); a yes/no such as "
                '"tolerated" does not count.',
                ref,
                "Observation.partOf",
            )
        )
    if vocabulary is None or reading is None:
        return found  # no note at all is description-missing (gaps._what_gaps)
    if not reading.done and reading.content_words < MIN_CONTENT_WORDS:
        found.append(
            policy.make(
                "description-vague",
                f"{code}: the note names no exercise or activity ({_quoted(service.notes)}).",
                ref,
                "Procedure.note",
            )
        )
        return found
    if not reading.skilled:
        found.append(
            policy.make(
                "skill-not-shown",
                f"{code}: the note shows no skilled element (instruction, cueing, "
                "progression, modification, assessment of the response).",
                ref,
                "Procedure.note",
            )
        )
    if service.code_text.strip():  # the procedure's own words for what was done count too
        reading = reading.followed_by(read_note((service.code_text,), vocabulary))
    review = review_code(
        code,
        reading,
        [m.name for m in service.measures if m.name],
        [(c.system, c.code) for c in service.codings],
        vocabulary,
    )
    if review is not None:
        message, fix = describe_review(review, vocabulary)
        finding = policy.make("code-choice-review", message, ref, "Procedure.code")
        found.append(
            replace(finding, fix=f"{fix} {finding.fix}".strip(), suggested_code=review.suggested)
        )
    return found


def _measured(service: VisitService, vocabulary: Vocabulary | None) -> bool:
    """An objective measure of the service: a linked Observation whose value measures (for a
    string, a number with a unit of the vocabulary), or numbers with units in its note (looked
    for only when no Observation measures: the patterns are searched through the whole note)."""
    for measure in service.measures:
        if measure.value_kind == "string" and vocabulary is not None:
            if vocabulary.measure_kinds(measure.value_text):
                return True
        elif measure.measures:
            return True
    return vocabulary is not None and vocabulary.measured(service.notes)


def _quoted(notes: tuple[str, ...]) -> str:
    text = " ".join(n.strip() for n in notes)
    return f'"{text[:60]}…"' if len(text) > 60 else f'"{text}"'
