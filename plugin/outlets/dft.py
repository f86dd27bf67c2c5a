"""HL7 v2 DFT^P03 (post detail financial transactions) for a billing day's charges.

One message per billing day and patient: MSH, EVN, PID, PV1, one FT1 per charge or credit,
one DG1 per diagnosis the charges point to. Field by field (HL7 v2.5.1 Ch. 2 MSH, Ch. 3 EVN,
PID, PV1 and DG1, Ch. 6 FT1; the same positions in 2.3 and 2.3.1):
- MSH-3..6 the applications and facilities of the site's interface specification, MSH-7 the
  time, MSH-9 `DFT^P03` (with its structure `DFT_P03` from 2.3.1), MSH-10 the control id (kept
  per message: a message sent again keeps it), MSH-11 the processing id, MSH-12 the version.
- PID-3 the patient's identifier of the site's system (else the one typed MR), PID-5 the name.
- PV1-2 the patient class, PV1-3 the site's location for the place of service, PV1-19 the visit
  number (the encounter's identifier of the site's system, else typed VN, else its id).
- FT1-1 set id; FT1-2 our line key (a receiver matches a credit to its charge by it); FT1-4
  the date of service; FT1-6 `CG` for a charge, for a credit `CD` or `CG` with a negative
  FT1-10 as the site says (table 0017); FT1-7 the charge code (CPT/HCPCS, or the site's charge
  master code); FT1-10 the units; FT1-16 the site's location for the place of service; FT1-19
  the diagnoses in pointer order (ICD-10-CM, `I10`); FT1-20 the rendering provider's NPI (the
  supervising therapist's for an assistant's line: Pub 100-02 ch.15 §230.1 B, §230.2 B);
  FT1-21 the referring or ordering provider's NPI (the Encounter's participant typed REF);
  FT1-25 the CPT/HCPCS code (`C4` CPT-4, `HCPCS`; table 0396); FT1-26 the modifiers (2.3.1
  and later; for a 2.3 receiver where the site chooses: `Hl7Site.modifiers`).
- The place of service has no field of its own in FT1: the site maps it to a location.
- Amounts are left to the receiver's charge master (FT1-11, FT1-12 empty).

Every message is parsed back by hl7apy against its version's message structure with strict
validation before it is sent: one that does not fit is never sent (MessageInvalid).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from plugin.errors import Invalid
from plugin.rules.decision import Decision
from plugin.rules.lines import ChargeLine
from plugin.rules.model import ASSISTANT_OF
from plugin.rules.systems import HCPCS, ICD10CM
from plugin.rules.visit import Identifier, Visit
from plugin.schemas.outlet import Hl7Site

log = logging.getLogger(__name__)

NPI_AUTHORITY = "NPI"  # XCN-9 assigning authority and XCN-13 identifier type of an NPI


class MessageInvalid(Invalid):
    """A message that does not fit its version's structure: never sent."""


@dataclass(frozen=True)
class Posting:
    """One FT1: a line's charge, or the credit of a line as it was last accepted."""

    key: str
    day: str  # "{owner}/{date}": the billing day it belongs to
    credit: bool
    content: dict[str, Any]

    def stored(self) -> dict[str, Any]:
        return {"key": self.key, "day": self.day, "credit": self.credit, "content": self.content}


def line_content(line: ChargeLine, decision: Decision, site: Hl7Site) -> dict[str, Any]:
    """What an FT1 says of a line: compared with what was last accepted, so a rerun sends only
    lines that changed."""
    visit = next((v for v in decision.visits if v.encounter in line.encounters), decision.visit)
    code_system = "HCPCS" if line.system == HCPCS else "C4"
    charge = line.code
    if site.charge_code == "cdm":  # a modifier-specific charge master entry first
        keys = [f"{line.code}-{m}" for m in line.modifiers] + [line.code]
        charge = next((site.cdm[k] for k in keys if k in site.cdm), "")  # "": not sendable
    if site.modifiers == "FT1-7-suffix" and line.modifiers and charge:
        charge = "-".join([charge, *line.modifiers])
    return {
        "date": line.date or visit.date_of_service or "",
        "code": line.code,
        "system": code_system,
        "label": line.label,
        "charge_code": charge,
        "charge_system": "99CDM" if site.charge_code == "cdm" else code_system,
        "units": line.units,
        "modifiers": list(line.modifiers),
        "diagnoses": [c.code for d in line.diagnoses for c in d.codings[:1] if c.system == ICD10CM],
        "rendering": _rendering_npi(line, decision),
        "ordering": visit.referrer_npi,
        "location": site.locations.get(visit.place_of_service, ""),
    }


def _rendering_npi(line: ChargeLine, decision: Decision) -> str:
    """The NPI the charge is rendered under: an assistant's line goes under the supervising
    therapist (assistants do not enrol as Medicare providers: Pub 100-02 ch.15 §230.1 B,
    §230.2 B); else the first performer with an NPI."""
    npis = {
        p.reference: p.npi
        for v in decision.visits
        for s in v.services
        for p in s.performers
        if p.reference and p.npi
    }
    for service in line.services:
        if service.supervisor and npis.get(service.supervisor):
            return npis[service.supervisor]
    for service in line.services:  # an assistant is never the rendering provider
        for performer in service.performers:
            if performer.npi and performer.role not in ASSISTANT_OF:
                return performer.npi
    return ""


def message(
    site: Hl7Site, decision: Decision, postings: list[Posting], control_id: str, at: datetime
) -> str:
    """The day's DFT^P03 with one FT1 per posting, validated against the site's version."""
    visit = decision.visit
    when = at.strftime("%Y%m%d%H%M%S")
    structure = "DFT^P03" if site.version == "2.3" else "DFT^P03^DFT_P03"
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                escape(site.sending_application),
                escape(site.sending_facility),
                escape(site.receiving_application),
                escape(site.receiving_facility),
                when,
                "",
                structure,
                control_id,
                site.processing_id,
                site.version,
            ]
        ),
        f"EVN|P03|{when}",
        _pid(site, visit),
        _pv1(site, visit, decision),
    ]
    diagnoses: list[str] = []
    for index, posting in enumerate(postings, 1):
        segments.append(_ft1(site, index, posting))
        for code in posting.content["diagnoses"]:
            if code not in diagnoses:
                diagnoses.append(code)
    for index, code in enumerate(diagnoses, 1):
        # DG1-3 the code, DG1-6 the type (table 0052: F final), DG1-15 its priority
        segments.append(_fields("DG1", str(index), "", f"{escape(code)}^^I10", "", "", "F"))
    text = "\r".join(segments)
    validate(text)
    return text


def validate(text: str) -> None:
    """hl7apy's strict parse of the message against its version's structure, then its
    validator (required fields and segments, cardinality); MessageInvalid naming what is
    wrong, without the message itself (it carries PHI)."""
    try:
        parsed = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except (HL7apyException, ValueError) as exc:
        what = f"the DFT^P03 message does not fit HL7 v2 structure: {type(exc).__name__}: {exc}"
        raise MessageInvalid(what, [("message", what)]) from exc


def _pid(site: Hl7Site, visit: Visit) -> str:
    mrn = _identifier(visit.patient_identifiers, site.patient_identifier_system, "MR")
    mrn = mrn or visit.patient_mrn or (visit.patient or "").rsplit("/", 1)[-1]
    name = f"{escape(visit.patient_family)}^{escape(visit.patient_given)}"
    return _fields("PID", "1", "", f"{escape(mrn)}^^^^MR", "", name if name != "^" else "UNKNOWN")


def _pv1(site: Hl7Site, visit: Visit, decision: Decision) -> str:
    number = _identifier(visit.identifiers, site.visit_identifier_system, "VN")
    number = number or visit.encounter_id
    location = escape(site.locations.get(visit.place_of_service, ""))
    fields = ["1", site.patient_class, location] + [""] * 15 + [f"{escape(number)}^^^^VN"]
    return _fields("PV1", *fields)


def _ft1(site: Hl7Site, index: int, posting: Posting) -> str:
    line = posting.content
    negative = posting.credit and site.credit == "negative"
    kind = "CD" if posting.credit and site.credit == "CD" else "CG"
    units = -line["units"] if negative else line["units"]
    procedure = f"{escape(line['code'])}^{escape(line['label'])}^{line['system']}"
    if site.modifiers == "FT1-25.4" and line["modifiers"]:
        procedure += "^" + escape(",".join(line["modifiers"]))
    fields = [""] * 26
    fields[1] = str(index)
    fields[2] = escape(posting.key)
    fields[4] = line["date"].replace("-", "")
    fields[6] = kind
    fields[7] = f"{escape(line['charge_code'])}^{escape(line['label'])}^{line['charge_system']}"
    fields[10] = str(units)
    fields[16] = escape(line["location"])
    fields[19] = "~".join(f"{escape(c)}^^I10" for c in line["diagnoses"])
    if line["rendering"]:
        fields[20] = _npi(line["rendering"])
    if line.get("ordering"):
        fields[21] = _npi(line["ordering"])
    fields[25] = procedure
    if site.modifiers == "FT1-26":
        fields.append("~".join(escape(m) for m in line["modifiers"]))
    return _fields("FT1", *fields[1:])


def _npi(npi: str) -> str:
    """An XCN naming a provider by NPI (XCN-1, XCN-9 assigning authority, XCN-13 type)."""
    return f"{escape(npi)}^^^^^^^^{NPI_AUTHORITY}^^^^{NPI_AUTHORITY}"


def _fields(segment: str, *values: str) -> str:
    return "|".join([segment, *values]).rstrip("|")


def _identifier(identifiers: tuple[Identifier, ...], system: str | None, kind: str) -> str:
    """The identifier of `system`, else (no system configured) the one typed `kind`."""
    for ident in identifiers:
        if system is not None and ident.system == system:
            return ident.value
        if system is None and ident.type == kind:
            return ident.value
    return ""


ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(value: str) -> str:
    """A value as HL7 v2 text: its delimiters escaped (HL7 v2.5.1 Ch. 2 "Escape sequences"),
    line breaks as spaces."""
    out = "".join(ESCAPES.get(ch, ch) for ch in value)
    return out.replace("\r", " ").replace("\n", " ")
