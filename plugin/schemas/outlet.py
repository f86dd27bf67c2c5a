"""The charge outlet's site settings (config/outlet.yaml, the managed table `outlet`): how the
site's billing system wants its charges written. Which outlet a deployment uses, and how to
reach it, are environment settings (THERACHARGE_OUTLET, THERACHARGE_HL7_*: README
"Connecting Epic or a billing system over HL7 v2")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

HL7_VERSIONS = ("2.3", "2.3.1", "2.5.1")
# Where the modifiers go. FT1-26 (procedure code modifier) exists from v2.3.1 on; a v2.3
# receiver names its own place: the procedure code's alternate identifier (FT1-25.4, the
# modifiers joined by ","), or the charge code with each modifier appended ("97110-GP-59",
# the form charge masters key modifier-specific charges by).
MODIFIER_PLACES = ("FT1-26", "FT1-25.4", "FT1-7-suffix")
# How a charge is reversed (HL7 table 0017 transaction type): CD (credit), or the charge type
# CG with a negative quantity, as the receiver's interface specification says.
CREDIT_STYLES = ("CD", "negative")
CHARGE_CODES = ("cpt", "cdm")  # FT1-7: the CPT/HCPCS code, or the site's charge master code


@dataclass(frozen=True)
class Hl7Site:
    """What the billing system's HL7 v2 interface expects (its interface specification)."""

    version: str = "2.5.1"
    sending_application: str = "THERACHARGE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"  # MSH-11: P production, T training, D debugging
    # PID-3: the Patient identifier of this system (None: the one typed MR)
    patient_identifier_system: str | None = None
    # PV1-19: the Encounter identifier of this system (None: the one typed VN, else its id)
    visit_identifier_system: str | None = None
    patient_class: str = "O"  # PV1-2 (table 0004): O outpatient
    credit: str = "CD"
    modifiers: str = "FT1-26"
    charge_code: str = "cpt"
    # CPT/HCPCS code, or "code-modifier" (e.g. "97110-GP"), → the site's charge master code
    cdm: Mapping[str, str] = field(default_factory=dict)
    # CMS place-of-service code → the site's location (PV1-3 and FT1-16 point of care)
    locations: Mapping[str, str] = field(default_factory=dict)


BILL_CODE_TYPES = ("CPT", "HCPCS", "ICD", "MODIFIER", "CDM_SCHED")


@dataclass(frozen=True)
class OracleSite:
    """What a Millennium tenant's ChargeItem operations need (Oracle Health Millennium Platform
    APIs, ChargeItem and its $create, $modify, $credit; "Proprietary codes and systems")."""

    tenant: str | None = None  # the tenant (EHR source) id in the bill-code systems' URLs
    # each bill-code type's schedule: its code in the tenant's code set 14002
    schedules: Mapping[str, str] = field(default_factory=dict)
    code: str = "cpt"  # `code`: cpt (CPT/HCPCS), or cdm (CDM_SCHED; CPT as procedure-code)
    cdm: Mapping[str, str] = field(default_factory=dict)  # as Hl7Site.cdm
    supervisor: str = "VRF"  # an assistant's supervising therapist: VRF performer, or omit


@dataclass(frozen=True)
class OutletSite:
    source: str = ""
    hl7v2: Hl7Site = field(default_factory=Hl7Site)
    oracle_health: OracleSite = field(default_factory=OracleSite)

    def missing(self, outlet: str) -> list[str]:
        """The site settings `outlet` cannot do without (named for the start-up error)."""
        if outlet != "oracle-health":
            return []
        oracle = self.oracle_health
        needed = ["CPT", "HCPCS", "ICD", "MODIFIER"] + ["CDM_SCHED"] * (oracle.code == "cdm")
        found = [] if oracle.tenant else ["oracle_health.tenant"]
        return found + [f"oracle_health.schedules.{k}" for k in needed if k not in oracle.schedules]


_CODE = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$", error="letters, digits, '.' and '-'")
# HD namespace ids and other short texts of the message header: nothing the encoding uses
_PLAIN = validate.Regexp(r"^[^|^~\\&\r\n]*$", error="no | ^ ~ \\ & or line breaks")


class Hl7SiteSchema(Schema):
    version = fields.String(load_default="2.5.1", validate=validate.OneOf(HL7_VERSIONS))
    sending_application = fields.String(load_default="THERACHARGE", validate=_PLAIN)
    sending_facility = fields.String(load_default="", validate=_PLAIN)
    receiving_application = fields.String(load_default="", validate=_PLAIN)
    receiving_facility = fields.String(load_default="", validate=_PLAIN)
    processing_id = fields.String(load_default="P", validate=validate.OneOf(["P", "T", "D"]))
    patient_identifier_system = fields.String(load_default=None, allow_none=True)
    visit_identifier_system = fields.String(load_default=None, allow_none=True)
    patient_class = fields.String(
        load_default="O", validate=validate.Regexp(r"^[A-Z]$", error="one capital letter")
    )
    credit = fields.String(load_default="CD", validate=validate.OneOf(CREDIT_STYLES))
    modifiers = fields.String(load_default="FT1-26", validate=validate.OneOf(MODIFIER_PLACES))
    charge_code = fields.String(load_default="cpt", validate=validate.OneOf(CHARGE_CODES))
    cdm = fields.Dict(keys=fields.String(validate=_CODE), values=fields.String(validate=_CODE))
    locations = fields.Dict(
        keys=fields.String(validate=validate.Regexp(r"^\d{2}$", error="a two-digit CMS code")),
        values=fields.String(validate=_PLAIN),
    )

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("version", "2.5.1") == "2.3" and data.get("modifiers", "FT1-26") == "FT1-26":
            raise ValidationError(
                "FT1-26 does not exist in HL7 v2.3: choose FT1-25.4 or FT1-7-suffix, as the "
                "billing system's interface specification says",
                "modifiers",
            )
        if data.get("charge_code") == "cdm" and not data.get("cdm"):
            raise ValidationError("charge_code cdm needs the charge master codes in cdm", "cdm")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Hl7Site:
        return Hl7Site(
            **{**data, "cdm": data.get("cdm") or {}, "locations": data.get("locations") or {}}
        )


class OracleSiteSchema(Schema):
    tenant = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[A-Za-z0-9\-]+$", error="the tenant id (letters, digits, -)"),
    )
    schedules = fields.Dict(
        keys=fields.String(validate=validate.OneOf(BILL_CODE_TYPES)),
        values=fields.String(validate=_CODE),
    )
    code = fields.String(load_default="cpt", validate=validate.OneOf(CHARGE_CODES))
    cdm = fields.Dict(keys=fields.String(validate=_CODE), values=fields.String(validate=_CODE))
    supervisor = fields.String(load_default="VRF", validate=validate.OneOf(["VRF", "omit"]))

    @validates_schema
    def _consistent(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("code") == "cdm" and not data.get("cdm"):
            raise ValidationError("code cdm needs the charge master codes in cdm", "cdm")

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> OracleSite:
        maps = {"schedules": data.get("schedules") or {}, "cdm": data.get("cdm") or {}}
        return OracleSite(**{**data, **maps})


class OutletSiteSchema(Schema):
    source = fields.String(load_default="")
    hl7v2 = fields.Nested(Hl7SiteSchema, load_default=lambda: Hl7Site())
    oracle_health = fields.Nested(OracleSiteSchema, load_default=lambda: OracleSite())

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> OutletSite:
        return OutletSite(data["source"], data["hl7v2"], data["oracle_health"])
