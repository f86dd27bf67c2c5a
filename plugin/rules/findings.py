"""Every kind of finding TheraCharge reports: its code, default severity, fix and rule source."""

from __future__ import annotations

from dataclasses import dataclass

from plugin.rules.visit import Finding, Severity

_NOTE = "Pub 100-02 ch.15 §220.3 E (treatment note)"
_DESIGN_TIME = "DESIGN.md 'Minutes': no time is a documentation gap, never 15 minutes guessed"


@dataclass(frozen=True, slots=True)
class FindingType:
    """What a finding code means: how serious by default, how to fix it, and why it matters."""

    code: str
    severity: Severity
    fix: str
    source: str


_TYPES = [
    # --- time (reading the record) ---
    FindingType(
        "time-missing",
        Severity.HOLD,
        "Document the minutes of this service (start and end, or a duration).",
        f"{_NOTE}; {_DESIGN_TIME}",
    ),
    FindingType(
        "time-invalid",
        Severity.HOLD,
        "Correct the service times: the end must come after the start.",
        _NOTE,
    ),
    FindingType("time-incomplete", Severity.HOLD, "Document when the service ended.", _NOTE),
    FindingType(
        "time-unreadable",
        Severity.HOLD,
        "Correct the date/time value so it has a date, a time and a time zone.",
        _NOTE,
    ),
    FindingType(
        "minutes-fractional",
        Severity.WARN,
        "Record whole minutes; the fraction was not counted.",
        "CMS Pub 100-04 ch.5 §20.2 C (minutes of direct contact)",
    ),
    # --- what was done ---
    FindingType(
        "code-unmapped",
        Severity.HOLD,
        "Code the procedure in CPT/HCPCS or add a mapping for its code (admin).",
        "DESIGN.md 'translate': an unmapped procedure is reported, never dropped",
    ),
    FindingType(
        "code-conflict",
        Severity.HOLD,
        "Keep one billing meaning: the procedure's codings point to different codes.",
        "DESIGN.md 'translate': conflicting codings are reported",
    ),
    FindingType(
        "procedure-not-completed",
        Severity.INFO,
        "Nothing to do unless the procedure was in fact completed.",
        "DESIGN.md 'translate': only completed procedures are billed",
    ),
    FindingType(
        "discipline-mismatch",
        Severity.WARN,
        "Check the plan of care this service was delivered under.",
        "Pub 100-02 ch.15 §220.1.2 (one plan of care per discipline)",
    ),
    # --- who ---
    FindingType(
        "performer-role-unknown",
        Severity.WARN,
        "Record the performer's role (PT, PTA, OT, OTA, SLP) or map the EHR's role code.",
        "Pub 100-02 ch.15 §220.3 E (who furnished the service)",
    ),
    # --- visit ---
    FindingType(
        "date-missing",
        Severity.HOLD,
        "Give the encounter a period start (the date of service).",
        "CMS Pub 100-04 ch.5 §20.2 A (units per calendar day)",
    ),
    FindingType(
        "coverage-missing",
        Severity.INFO,
        "Add the patient's Coverage so the payer's own rule applies.",
        "config/payers.yaml default_method",
    ),
    FindingType(
        "payer-unknown",
        Severity.WARN,
        "Add the payer's identifier to the payer table (admin).",
        "config/payers.yaml",
    ),
    # --- the record itself ---
    FindingType(
        "reference-unresolved",
        Severity.WARN,
        "Include the referenced resource, or correct the reference.",
        "FHIR R4 References",
    ),
    FindingType(
        "resource-invalid",
        Severity.WARN,
        "Correct the resource so it is valid FHIR R4.",
        "FHIR R4 (4.0.1)",
    ),
    FindingType(
        "encounter-missing",
        Severity.HOLD,
        "Include the procedure's Encounter, or correct Procedure.encounter.",
        "DESIGN.md 'translate': one Visit per Encounter",
    ),
]

FINDING_TYPES = {t.code: t for t in _TYPES}


def finding(
    code: str, message: str, resource: str | None = None, element: str | None = None
) -> Finding:
    """A finding of a registered type, with its default severity, fix and source."""
    kind = FINDING_TYPES[code]
    return Finding(code, kind.severity, message, resource, element, kind.fix, kind.source)
