"""A decision as CDS Hooks 2.0 cards for the therapist: what was charged, what must be fixed."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from fhir_mappings.chargeitem import name_uuid
from plugin.rules import sources
from plugin.rules.decision import Decision
from plugin.rules.lines import LineStatus
from plugin.rules.sources import link_for
from plugin.rules.visit import Finding, Severity

Card = dict[str, Any]
SUMMARY_LIMIT = 140  # CDS Hooks 2.0: summary "SHOULD be less than 140 characters"
_NAMESPACE = uuid.UUID("8a4d6c2e-52f7-4f1c-9a40-0d3e7b6f1c55")
SOURCE_LABEL = "TheraCharge therapy charge rules"


def _short(text: str) -> str:
    return text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 2] + "…"


def _source(citation: str) -> dict[str, str]:
    source = {"label": f"{SOURCE_LABEL}: {citation}"[:200]}
    href = link_for(citation)
    if href:
        source["url"] = href
    return source


def _card_uuid(decision: Decision, key: str) -> str:
    return name_uuid(_NAMESPACE, f"{decision.visit.encounter}|{key}")


def override_reasons(system: str) -> list[dict[str, str]]:
    """Why a clinician may dismiss a warning (not a hold: holds are fixed in the record)."""
    return [
        {
            "system": system,
            "code": "documented-elsewhere",
            "display": "Documented elsewhere in the record",
        },
        {
            "system": system,
            "code": "not-required",
            "display": "Not required for this patient or payer",
        },
        {"system": system, "code": "will-correct", "display": "Will correct the documentation"},
    ]


def summary_card(decision: Decision) -> Card:
    """One info card: units per code and the method, in one line."""
    visit = decision.visit
    parts = [
        "-".join((line.code, *line.modifiers)) + f" ×{line.units}"
        for line in decision.lines
        if line.status is LineStatus.BILLABLE
    ]
    held = sum(1 for line in decision.lines if line.status is LineStatus.PLANNED)
    text = f"Charges ({visit.method.value.upper()}): {', '.join(parts) or 'none billable'}"
    if held:
        text += f"; {held} held"
    detail = "\n".join(
        f"- {line.code}: {line.units} unit(s), {line.minutes} min, {line.status.value}"
        + (f" — {line.note}" if line.note else "")
        for line in decision.lines
    )
    return {
        "uuid": _card_uuid(decision, "summary"),
        "summary": _short(text),
        "indicator": "info",
        "detail": detail or "No billable procedures in this encounter.",
        "source": _source(decision.explanation[0].source if decision.explanation else ""),
    }


def gap_cards(decision: Decision, override_system: str) -> list[Card]:
    """One warning card per held line, and one per group of warnings of the same kind."""
    cards = [
        _held_card(decision, line.code, line.holds)
        for line in decision.lines
        if line.status is LineStatus.PLANNED
    ]
    warnings: dict[str, list[Finding]] = defaultdict(list)
    for item in decision.findings:
        if item.severity is Severity.WARN:
            warnings[item.code].append(item)
    cards += [
        _warning_card(decision, code, items, override_system) for code, items in warnings.items()
    ]
    return cards


def _held_card(decision: Decision, code: str, holds: tuple[Finding, ...]) -> Card:
    first = holds[0]
    more = f" (+{len(holds) - 1} more)" if len(holds) > 1 else ""
    return {
        "uuid": _card_uuid(decision, f"held|{code}"),
        "summary": _short(f"{code} held: {first.title or first.code}{more}"),
        "indicator": "warning",
        "detail": _detail(holds),
        "source": _source(first.source),
    }


def _warning_card(
    decision: Decision, code: str, items: list[Finding], override_system: str
) -> Card:
    first = items[0]
    count = f"{len(items)}× " if len(items) > 1 else ""
    return {
        "uuid": _card_uuid(decision, f"warn|{code}"),
        "summary": _short(f"{count}{first.title or first.code}: {first.message}"),
        "indicator": "warning",
        "detail": _detail(items),
        "source": _source(first.source),
        "overrideReasons": override_reasons(override_system),
    }


def _detail(items: tuple[Finding, ...] | list[Finding]) -> str:
    """Markdown: each finding in one line, where it is and how to fix it."""
    return "\n".join(
        f"- **{f.title or f.code}** ({f.code}; {f.resource or 'visit'}"
        f"{', ' + f.element if f.element else ''}): {f.message} *Fix:* {f.fix}"
        + (f" *Who can fix it:* {f.fixed_by}." if f.fixed_by else "")
        for f in items
    )


def decided_alone_card(decision: Decision) -> Card:
    """The hook could not read the patient's other visits of the day (no FHIR server to ask)."""
    day = decision.visit.date_of_service or "this date"
    return {
        "uuid": _card_uuid(decision, "alone"),
        "summary": _short(f"Decided from this visit alone: other visits of {day} not seen"),
        "indicator": "info",
        "detail": "TheraCharge could not read the patient's other visits of the same day from "
        "the EHR, so this visit's minutes were counted on their own. Medicare counts timed "
        "minutes per patient, day and discipline (CMS Pub 100-04 ch.5 §20.2 C): the units may "
        "change when the other visits are seen.",
        "source": _source(sources.BILLING_DAY.title),
    }


def written_card(written: dict[str, list[str]], sent: bool) -> Card:
    """What the direct write did, by line: created, updated, entered-in-error, unchanged."""
    if not sent:
        return _plain(f"ChargeItems already up to date ({len(written['unchanged'])} unchanged).")
    words = (
        ("created", "created"),
        ("updated", "updated"),
        ("entered_in_error", "entered-in-error"),
        ("unchanged", "unchanged"),
    )
    parts = [f"{len(written[key])} {word}" for key, word in words if written.get(key)]
    return _plain("ChargeItems written: " + ", ".join(parts) + ".")


def write_failed_card(error: str) -> Card:
    """The EHR refused the ChargeItems or could not be reached: billing must re-run it."""
    return {
        "summary": "Charges were NOT written to the EHR; billing must re-run this encounter.",
        "indicator": "warning",
        "detail": f"The EHR refused or could not take the ChargeItems: {error}",
        "source": {"label": "TheraCharge"},
    }


def deferred_card(seconds: float, queued: bool) -> Card:
    """The EHR did not answer within the hook's time budget: what the cards above show is the
    prefetched visit alone, and the billing day is decided later (queued) or on the next call."""
    then = (
        "The billing day is queued: it will be read, decided and written when the EHR answers, "
        "and its charges and holds will then be on the worklist."
        if queued
        else "Nothing was written; the day is decided again on the next call."
    )
    return {
        "summary": _short("EHR slow: billing day not decided yet, will be when the EHR answers")
        if queued
        else _short("EHR slow: billing day not decided; shown from this visit alone"),
        "indicator": "warning",
        "detail": f"The EHR did not answer within {seconds:g} s. Any cards above come from this "
        f"visit's prefetched data alone. {then}",
        "source": {"label": "TheraCharge"},
    }


def _plain(summary: str) -> Card:
    return {"summary": _short(summary), "indicator": "info", "source": {"label": "TheraCharge"}}
