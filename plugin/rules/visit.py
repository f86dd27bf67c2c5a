"""A therapy visit as billing sees it: plain data read from FHIR, with the problems found."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from plugin.rules.history import CarePlanFacts, GoalFacts, History, OtherService
from plugin.rules.model import ROLE_DISCIPLINE, Discipline, Method, Role
from plugin.rules.records import Record

__all__ = ["ROLE_DISCIPLINE", "Role"]  # defined with the disciplines; read from here too


class Severity(StrEnum):
    """How a finding affects a charge line (the gap issue makes severities payer-configurable)."""

    HOLD = "hold"  # the line is not billed until fixed (ChargeItem status planned)
    WARN = "warn"  # informs; the line is billed
    INFO = "info"  # how a decision was reached


SEVERITY_ORDER = {Severity.HOLD: 0, Severity.WARN: 1, Severity.INFO: 2}


class Finding(Record, frozen=True, gc=False):
    """A problem or note about a visit: what, how serious, where, how to fix it, and why."""

    code: str
    severity: Severity
    message: str
    resource: str | None = None  # "Procedure/123"
    element: str | None = None  # "Procedure.performedPeriod.end"
    fix: str = ""
    source: str = ""
    # A code-choice review's suggestion: the code the documented activity fits better (or the
    # second code of a block that describes two activities); never applied by itself
    suggested_code: str | None = None
    title: str = ""  # its registered title, in people's words (config/rules/findings.yaml)
    fixed_by: str = ""  # who can fix it, and where


class Performer(Record, frozen=True, gc=False):
    """One performer of a procedure, with the minutes of their own period when documented."""

    reference: str | None
    role: Role | None
    role_coding: tuple[str, str] | None = None  # (system, code) the role was read from
    minutes: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    # as billing staff look them up (the worklist): never in a log
    name: str = ""
    credential: str = ""  # the qualifications written on the Practitioner, else the role
    npi: str = ""
    role_source: str = ""  # where the role was read ("PractitionerRole/r1.specialty" …)


class Identifier(Record, frozen=True, gc=False):
    """A business identifier as the EHR wrote it: an encounter's visit number, a patient's
    medical record number (their `type` code from HL7 table 0203: VN, MR …)."""

    system: str
    value: str
    type: str = ""


class Coding(Record, frozen=True, gc=False):
    system: str
    code: str
    display: str = ""


class Diagnosis(Record, frozen=True, gc=False):
    reference: str | None
    codings: tuple[Coding, ...]
    # the mapping table (ConceptMap url) an ICD-10-CM coding was translated through, if any
    translated_by: str | None = None


class Measure(NamedTuple):
    """An Observation linked to a procedure (Observation.partOf): what it measured and how."""

    reference: str
    name: str  # code.text or the first coding's display
    value_kind: str  # "quantity", "code", "string", "boolean"
    value_text: str = ""  # a valueString as written

    @property
    def measures(self) -> bool:
        """A value that measures: not a boolean ("tolerated"), not a string without a number
        (a string's units are read with the vocabulary's patterns by the gap check)."""
        return self.value_kind in ("quantity", "code") or (
            self.value_kind == "string" and any(c.isdigit() for c in self.value_text)
        )


class VisitService(Record, frozen=True, gc=False):
    """One documented procedure of the visit."""

    reference: str  # "Procedure/123"
    status: str
    codings: tuple[Coding, ...]
    code: str | None  # CPT/HCPCS after mapping; None when it could not be mapped
    minutes: int | None
    minutes_source: str | None  # "extension", "performer-period" or "performed-period"
    start: datetime | None
    end: datetime | None
    date: str | None  # date of service of this procedure (ISO)
    performers: tuple[Performer, ...] = ()
    discipline: Discipline | None = None
    body_sites: tuple[Coding, ...] = ()
    reasons: tuple[str, ...] = ()  # Condition references or reason codes
    notes: tuple[str, ...] = ()
    measures: tuple[Measure, ...] = ()  # Observations linked to this procedure, with a value
    based_on: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    group_subject: bool = False  # Procedure.subject is a Group: several patients at once
    # The diagnoses the procedure itself names (reasonReference Conditions, reasonCode), coded
    diagnoses: tuple[Diagnosis, ...] = ()
    # For a service an assistant furnished: the therapist of its discipline who supervised it
    # (on the procedure, among the encounter's participants or its other performers, or the
    # assistant's configured supervisor); None when the record names none.
    supervisor: str | None = None
    # Procedure.code.text: the charge's own words (often the code's descriptor), kept as sent;
    # never evidence for the code-choice review (it names the code billed, not the activity)
    code_text: str = ""

    @property
    def billable_status(self) -> bool:
        """Only completed procedures are billed; others are reported."""
        return self.status == "completed"


class Visit(Record, frozen=True, gc=False):
    """One Encounter with what billing needs, and every problem met reading it."""

    encounter: str  # "Encounter/123"
    patient: str | None
    status: str | None
    date_of_service: str | None
    start: datetime | None
    end: datetime | None
    service_provider: str | None
    accounts: tuple[str, ...]
    diagnoses: tuple[Diagnosis, ...]
    services: tuple[VisitService, ...]
    method: Method
    method_reason: str
    payer: str | None = None
    coverage: str | None = None
    goals: tuple[GoalFacts, ...] = ()  # the patient's active goals, with what they address
    care_plans: tuple[CarePlanFacts, ...] = ()  # the patient's plans of care read with the day
    findings: tuple[Finding, ...] = ()
    documented_timed_minutes: int | None = None  # the visit's own total, when the EHR sends one
    place_of_service: str = "11"  # CMS place-of-service code: Location.type, facility, default
    # The patient's episode as read (earlier visits, care plans, reports, the year's charges);
    # None when it could not be read (a hook decided without the EHR)
    history: History | None = None
    # Other patients' services by this visit's performers around its date (from the file, or
    # one search of the EHR); None when they could not be read (one-on-one not checked)
    colleagues: tuple[OtherService, ...] | None = None
    # the patient as billing staff look them up (the worklist): never in a log
    patient_name: str = ""
    patient_mrn: str = ""
    patient_birth_date: str = ""
    # what billing systems match a visit and a patient by (HL7 v2 PV1-19, PID-3, PID-5)
    identifiers: tuple[Identifier, ...] = ()  # the encounter's
    patient_identifiers: tuple[Identifier, ...] = ()
    patient_family: str = ""
    patient_given: str = ""
    # who referred the patient or ordered the therapy (Encounter.participant typed REF), with
    # the NPI billing systems name them by (HL7 v2 FT1-21; Oracle Health performer OP)
    referrer: str | None = None
    referrer_npi: str = ""

    @property
    def encounter_id(self) -> str:
        return self.encounter.split("/", 1)[-1]
