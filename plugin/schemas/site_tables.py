"""Schemas of the site tables: payers (config/payers.yaml), roles and service types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from plugin.rules.model import Discipline, Method
from plugin.rules.payers import CodingTables, Payer, PayerTable, PractitionerTable
from plugin.rules.visit import Role, Severity


class IdentifierSchema(Schema):
    system = fields.String(required=True, validate=validate.Length(min=1))
    value = fields.String(required=True, validate=validate.Length(min=1))


class ModifierPolicySchema(Schema):
    plan_of_care = fields.Boolean(load_default=True)  # GP/GO/GN on every therapy line
    assistant = fields.Boolean(load_default=False)  # CQ/CO on units a PTA/OTA furnished


class NcciPolicySchema(Schema):
    edits = fields.Boolean(load_default=True)  # the CMS PTP and MUE edits apply
    ptp_modifier = fields.String(load_default="XU", validate=validate.OneOf(["XU", "59"]))


class EpisodePolicySchema(Schema):
    plan_of_care = fields.Boolean(load_default=False)  # a certified plan covers the date
    progress_reports = fields.Boolean(load_default=False)  # a report every 10 treatment days
    kx = fields.Boolean(load_default=False)  # KX above the year's threshold


class PayerSchema(Schema):
    id = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]*$"))
    name = fields.String(required=True, validate=validate.Length(min=1))
    method = fields.Enum(Method, by_value=True, required=True)
    identifiers = fields.List(
        fields.Nested(IdentifierSchema), required=True, validate=validate.Length(min=1)
    )
    source = fields.String(required=True, validate=validate.Length(min=1))
    modifiers = fields.Nested(
        ModifierPolicySchema, load_default=lambda: {"plan_of_care": True, "assistant": False}
    )
    ncci = fields.Nested(
        NcciPolicySchema, load_default=lambda: {"edits": True, "ptp_modifier": "XU"}
    )
    episode = fields.Nested(
        EpisodePolicySchema,
        load_default=lambda: {"plan_of_care": False, "progress_reports": False, "kx": False},
    )
    gap_severity = fields.Dict(
        keys=fields.String(), values=fields.Enum(Severity, by_value=True), load_default=dict
    )
    # the code for two or more patients treated at once (concurrent-patients suggests it)
    group_code = fields.String(
        load_default="97150", validate=validate.Regexp(r"^[A-Z0-9]{5}$", error="a CPT code")
    )


class PayerTableSchema(Schema):
    default_method = fields.Enum(Method, by_value=True, required=True)
    default_source = fields.String(required=True, validate=validate.Length(min=1))
    payers = fields.List(fields.Nested(PayerSchema), required=True)

    @validates_schema
    def _unique(self, data: dict[str, Any], **_: Any) -> None:
        ids: dict[str, int] = {}
        owners: dict[tuple[str, str], str] = {}
        errors: dict[int, dict[str, list[str]]] = {}
        for index, payer in enumerate(data["payers"]):
            if payer["id"] in ids:
                errors[index] = {
                    "id": [f"duplicate payer id (first at payers[{ids[payer['id']]}])"]
                }
            ids.setdefault(payer["id"], index)
            for ident in payer["identifiers"]:
                key = (ident["system"], ident["value"])
                if key in owners and owners[key] != payer["id"]:
                    message = f"{key[0]}|{key[1]} already identifies payer {owners[key]}"
                    errors.setdefault(index, {})["identifiers"] = [message]
                owners.setdefault(key, payer["id"])
        if errors:
            raise ValidationError({"payers": errors})

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> PayerTable:
        return PayerTable(
            payers=tuple(
                Payer(
                    id=p["id"],
                    name=p["name"],
                    method=p["method"],
                    identifiers=tuple((i["system"], i["value"]) for i in p["identifiers"]),
                    source=p["source"],
                    gap_severity=dict(p["gap_severity"]),
                    plan_of_care_modifiers=p["modifiers"]["plan_of_care"],
                    assistant_modifiers=p["modifiers"]["assistant"],
                    ncci_edits=p["ncci"]["edits"],
                    ptp_modifier=p["ncci"]["ptp_modifier"],
                    plan_of_care_required=p["episode"]["plan_of_care"],
                    progress_reports_required=p["episode"]["progress_reports"],
                    kx_threshold=p["episode"]["kx"],
                    group_code=p["group_code"],
                )
                for p in data["payers"]
            ),
            default_method=data["default_method"],
            default_source=data["default_source"],
        )


class RoleEntrySchema(Schema):
    system = fields.String(required=True, validate=validate.Length(min=1))
    code = fields.String(required=True, validate=validate.Length(min=1))
    display = fields.String(load_default="")
    role = fields.Enum(Role, by_value=True, required=True)
    source = fields.String(required=True, validate=validate.Length(min=1))
    # exact: this code; prefix: every code that begins with it (a NUCC taxonomy family)
    match = fields.String(load_default="exact", validate=validate.OneOf(["exact", "prefix"]))


class ServiceTypeEntrySchema(Schema):
    system = fields.String(required=True, validate=validate.Length(min=1))
    code = fields.String(required=True, validate=validate.Length(min=1))
    display = fields.String(load_default="")
    discipline = fields.Enum(Discipline, by_value=True, required=True)
    source = fields.String(required=True, validate=validate.Length(min=1))


def _duplicates(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    seen: dict[tuple[str, str], int] = {}
    errors: dict[int, dict[str, list[str]]] = {}
    for index, entry in enumerate(entries):
        key = (entry["system"], entry["code"])
        if key in seen:
            errors[index] = {
                "code": [f"duplicate {key[0]}|{key[1]} (first at {name}[{seen[key]}])"]
            }
        seen.setdefault(key, index)
    return {name: errors} if errors else {}


class PlaceOfServiceSchema(Schema):
    default = fields.String(load_default="11", validate=validate.Regexp(r"^\d{2}$"))
    by_service_provider = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1)),
        values=fields.String(validate=validate.Regexp(r"^\d{2}$")),
        load_default=dict,
    )


class SupervisorSchema(Schema):
    assistant = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z]+/[^/\s]+$"))
    therapist = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z]+/[^/\s]+$"))


class CodingTablesSchema(Schema):
    roles = fields.List(fields.Nested(RoleEntrySchema), required=True)
    service_types = fields.List(fields.Nested(ServiceTypeEntrySchema), load_default=list)
    place_of_service = fields.Nested(
        PlaceOfServiceSchema, load_default=lambda: {"default": "11", "by_service_provider": {}}
    )
    supervisors = fields.List(fields.Nested(SupervisorSchema), load_default=list)

    @validates_schema
    def _unique(self, data: dict[str, Any], **_: Any) -> None:
        errors = {
            **_duplicates(data["roles"], "roles"),
            **_duplicates(data["service_types"], "service_types"),
        }
        assistants: dict[str, int] = {}
        for index, entry in enumerate(data["supervisors"]):
            if entry["assistant"] in assistants:
                first = assistants[entry["assistant"]]
                errors.setdefault("supervisors", {})[index] = {
                    "assistant": [f"duplicate assistant (first at supervisors[{first}])"]
                }
            assistants.setdefault(entry["assistant"], index)
        if errors:
            raise ValidationError(errors)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> CodingTables:
        return CodingTables(
            roles={
                (e["system"], e["code"]): e["role"] for e in data["roles"] if e["match"] == "exact"
            },
            role_prefixes=tuple(
                sorted(
                    (
                        (e["system"], e["code"], e["role"])
                        for e in data["roles"]
                        if e["match"] == "prefix"
                    ),
                    key=lambda entry: -len(entry[1]),
                )
            ),
            service_types={
                (e["system"], e["code"]): e["discipline"] for e in data["service_types"]
            },
            places_of_service=dict(data["place_of_service"]["by_service_provider"]),
            default_place_of_service=data["place_of_service"]["default"],
            supervisors={e["assistant"]: e["therapist"] for e in data["supervisors"]},
        )


class PractitionerEntrySchema(Schema):
    """One practitioner of the site's table: by reference or by NPI, never both."""

    reference = fields.String(
        load_default=None, validate=validate.Regexp(r"^Practitioner/[^/\s]+$")
    )
    npi = fields.String(load_default=None, validate=validate.Regexp(r"^\d{10}$"))
    role = fields.Enum(Role, by_value=True, required=True)
    name = fields.String(load_default="")
    source = fields.String(required=True, validate=validate.Length(min=1))

    @validates_schema
    def _one_key(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("reference") is None) == (data.get("npi") is None):
            raise ValidationError("give the practitioner's reference or its NPI (one of them)")


class PractitionerTableSchema(Schema):
    """config/practitioners.yaml: the site's practitioners whose role the EHR does not say."""

    source = fields.String(load_default="")
    practitioners = fields.List(fields.Nested(PractitionerEntrySchema), required=True)

    @validates_schema
    def _unique(self, data: dict[str, Any], **_: Any) -> None:
        seen: dict[str, int] = {}
        errors: dict[int, dict[str, list[str]]] = {}
        for index, entry in enumerate(data["practitioners"]):
            key = _practitioner_key(entry)
            if key in seen:
                errors[index] = {
                    "reference" if entry["reference"] else "npi": [
                        f"duplicate {key} (first at practitioners[{seen[key]}])"
                    ]
                }
            seen.setdefault(key, index)
        if errors:
            raise ValidationError({"practitioners": errors})

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> PractitionerTable:
        return PractitionerTable(
            {_practitioner_key(e): e["role"] for e in data["practitioners"]}, data["source"]
        )


def _practitioner_key(entry: Mapping[str, Any]) -> str:
    return entry["reference"] or f"NPI|{entry['npi']}"
