"""Who a visit is about and who treated: the patient's name and medical record number, each
practitioner's name, credential and NPI, as billing staff look them up on the worklist.

Kept in the decision's report (an authenticated page shows it); never written to a log.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fhir_mappings import facts as fx
from plugin.rules.systems import IDENTIFIER_TYPE, NPI
from plugin.rules.visit import Identifier


def display_name(names: object) -> str:
    """A HumanName as people write it: its text, else given names then family; the official
    (or usual) name first."""
    if not isinstance(names, list):
        return ""
    ranked = sorted(
        (n for n in names if isinstance(n, dict)),
        key=lambda n: {"official": 0, "usual": 1}.get(str(n.get("use")), 2),
    )
    for name in ranked:
        if name.get("text"):
            return str(name["text"])
        given = " ".join(str(g) for g in name.get("given") or () if g)
        family = str(name.get("family") or "")
        whole = " ".join(part for part in (given, family) if part)
        if whole:
            return whole
    return ""


def _mrn(identifiers: object) -> str:
    """The identifier typed MR (medical record number), else the first with a value."""
    found = ""
    for ident in identifiers if isinstance(identifiers, list) else ():
        if not isinstance(ident, dict) or not ident.get("value"):
            continue
        types = fx.codings(ident.get("type"))
        if any(system == IDENTIFIER_TYPE and code == "MR" for system, code, _ in types):
            return str(ident["value"])
        found = found or str(ident["value"])
    return found


def _npi(identifiers: object) -> str:
    for ident in identifiers if isinstance(identifiers, list) else ():
        if isinstance(ident, dict) and ident.get("system") == NPI and ident.get("value"):
            return str(ident["value"])
    return ""


def _credential(qualifications: object) -> str:
    """The practitioner's qualifications as written (DPT, PT, OTR/L …)."""
    found = []
    for qualification in qualifications if isinstance(qualifications, list) else ():
        if isinstance(qualification, dict):
            text = fx.concept_text(qualification.get("code"))
            if text:
                found.append(text)
    return ", ".join(dict.fromkeys(found))


def name_parts(names: object) -> tuple[str, str]:
    """(family, given names) of the official (or usual, else first) HumanName, for messages
    whose name field has parts (HL7 v2 PID-5)."""
    if not isinstance(names, list):
        return "", ""
    ranked = sorted(
        (n for n in names if isinstance(n, dict)),
        key=lambda n: {"official": 0, "usual": 1}.get(str(n.get("use")), 2),
    )
    for name in ranked:
        family = name.get("family")
        given = " ".join(str(g) for g in name.get("given") or () if isinstance(g, str) and g)
        if (isinstance(family, str) and family) or given:
            return (family if isinstance(family, str) else ""), given
    return "", ""


class PatientFacts(NamedTuple):
    name: str
    mrn: str
    identifiers: tuple[Identifier, ...] = ()
    family: str = ""
    given: str = ""
    birth_date: str = ""  # Patient.birthDate, as written


class People:
    """Patients and practitioners read, by reference."""

    def __init__(self) -> None:
        self.patients: dict[str, PatientFacts] = {}
        self.practitioners: dict[str, tuple[str, str, str]] = {}  # key → (name, credential, NPI)

    def add(self, kind: object, resource: dict[str, Any], key: str) -> None:
        if kind == "Patient":
            family, given = name_parts(resource.get("name"))
            self.patients[key] = PatientFacts(
                display_name(resource.get("name")),
                _mrn(resource.get("identifier")),
                tuple(Identifier(*i) for i in fx.identifiers(resource.get("identifier"))),
                family,
                given,
                str(resource.get("birthDate") or ""),
            )
        elif kind == "Practitioner":
            self.practitioners[key] = (
                display_name(resource.get("name")),
                _credential(resource.get("qualification")),
                _npi(resource.get("identifier")),
            )

    def patient(self, reference: str | None) -> PatientFacts:
        return self.patients.get(reference or "", PatientFacts("", ""))

    def practitioner(self, reference: str | None) -> tuple[str, str, str]:
        return self.practitioners.get(reference or "", ("", "", ""))
