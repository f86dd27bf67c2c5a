"""Code mapping tables as FHIR R4 ConceptMap JSON: one schema for files and the admin API."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from marshmallow.experimental.context import Context

from plugin.rules.code_mapping import CodeMap, MappedCode
from plugin.rules.model import Catalog
from plugin.rules.systems import ICD10CM

# An ICD-10-CM code as written: a letter, two characters, then up to four after the dot
ICD10CM_CODE = re.compile(r"[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?")

# ConceptMap.group.element.target.equivalence values that name a usable billing mapping.
USABLE_EQUIVALENCE = [
    "relatedto",
    "equivalent",
    "equal",
    "wider",
    "subsumes",
    "narrower",
    "specializes",
    "inexact",
]


class TargetSchema(Schema):
    code = fields.String(required=True)
    display = fields.String()
    equivalence = fields.String(required=True, validate=validate.OneOf(USABLE_EQUIVALENCE))
    comment = fields.String(required=True, validate=validate.Length(min=1))


class ElementSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1))
    display = fields.String()
    target = fields.List(
        fields.Nested(TargetSchema),
        required=True,
        validate=validate.Length(equal=1, error="exactly one target per source code"),
    )


class GroupSchema(Schema):
    source = fields.String(required=True, validate=validate.Length(min=1))
    sourceVersion = fields.String()
    target = fields.String(required=True)
    targetVersion = fields.String()
    element = fields.List(fields.Nested(ElementSchema), required=True)

    @validates_schema
    def _targets_in_catalog(self, data: dict[str, Any], **_: Any) -> None:
        """A procedure group's targets are catalog codes of its target system; a diagnosis
        group's (target ICD-10-CM) are ICD-10-CM codes in their written form."""
        catalog: Catalog = Context[Catalog].get()
        errors: dict[int, Any] = {}
        for index, element in enumerate(data["element"]):
            code = element["target"][0]["code"]
            if data["target"] == ICD10CM:
                if not ICD10CM_CODE.fullmatch(code):
                    message = f"{code} is not an ICD-10-CM code (e.g. M17.11)"
                    errors[index] = {"target": {0: {"code": [message]}}}
                continue
            definition = catalog.codes.get(code)
            if definition is None:
                errors[index] = {"target": {0: {"code": [f"{code} is not in the code catalog"]}}}
            elif definition.system != data["target"]:
                message = f"{code} is in the catalog under {definition.system}, not this group"
                errors[index] = {"target": {0: {"code": [message]}}}
        if errors:
            raise ValidationError({"element": errors})


class ConceptMapSchema(Schema):
    resourceType = fields.String(required=True, validate=validate.Equal("ConceptMap"))
    id = fields.String()
    url = fields.String(required=True, validate=validate.Length(min=1))
    version = fields.String()
    name = fields.String()
    title = fields.String()
    status = fields.String(
        required=True, validate=validate.OneOf(["draft", "active", "retired", "unknown"])
    )
    experimental = fields.Boolean()
    date = fields.String()
    publisher = fields.String()
    description = fields.String()
    purpose = fields.String()
    copyright = fields.String()
    sourceUri = fields.String()
    sourceCanonical = fields.String()
    targetUri = fields.String()
    targetCanonical = fields.String()
    group = fields.List(fields.Nested(GroupSchema), required=True, validate=validate.Length(min=1))

    @validates_schema
    def _no_duplicate_sources(self, data: dict[str, Any], **_: Any) -> None:
        seen: dict[tuple[str, str], str] = {}
        errors: dict[int, Any] = {}
        for g, group in enumerate(data["group"]):
            for e, element in enumerate(group["element"]):
                key = (group["source"], element["code"])
                if key in seen:
                    message = f"duplicate source code {key[0]}|{key[1]} (first at {seen[key]})"
                    errors.setdefault(g, {"element": {}})["element"][e] = {"code": [message]}
                else:
                    seen[key] = f"group[{g}].element[{e}]"
        if errors:
            raise ValidationError({"group": errors})


def load_concept_map(raw: object, catalog: Catalog) -> dict[str, Any]:
    """Validate one ConceptMap (decoded JSON); ValidationError names each bad element."""
    if not isinstance(raw, dict):
        raise ValidationError("expected a ConceptMap JSON object")
    with Context(catalog):
        result: dict[str, Any] = ConceptMapSchema().load(raw)
    return result


def merge_concept_maps(maps: list[tuple[str, dict[str, Any]]]) -> CodeMap:
    """Merge validated tables; the same source code in two tables is an error naming both."""
    entries: dict[tuple[str, str], MappedCode] = {}
    diagnoses: dict[tuple[str, str], MappedCode] = {}
    where: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for name, concept_map in maps:
        for g, group in enumerate(concept_map["group"]):
            for e, element in enumerate(group["element"]):
                key = (group["source"], element["code"])
                place = f"{name} group[{g}].element[{e}]"
                if key in entries:
                    problems.append(f"{place}: {key[0]}|{key[1]} is already mapped in {where[key]}")
                    continue
                target = element["target"][0]
                mapped = MappedCode(
                    target["code"], concept_map["url"], target["equivalence"], target["comment"]
                )
                (diagnoses if group["target"] == ICD10CM else entries)[key] = mapped
                where[key] = place
    if problems:
        raise ValidationError("; ".join(problems))
    return CodeMap(entries, diagnoses)
