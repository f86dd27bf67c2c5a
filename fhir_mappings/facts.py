"""The few fields billing reads from each FHIR resource, taken from plain JSON dicts.

This is the hot path: orjson dicts read directly, about 80× cheaper than validating each
resource with fhir.resources (docs/performance.md); full validation is the optional strict
mode (fhir_mappings.strict). Each extractor keeps only what billing uses, so a large export is
held as small records rather than whole resources.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from msgspec import Struct

from plugin.jsontypes import Json

# The R5 element Procedure.performer.period, carried in R4 as a cross-version extension.
PERFORMER_PERIOD_URL = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Procedure.performer.period"
)

CodingTuple = tuple[str, str, str]  # system, code, display
# Elements kept as written (a date, a Duration …) are typed Any, not object (mypyc, which
# compiles this module (hatch_build.py), could not build a dataclass field of type object).
# The facts are msgspec Structs (mutable, like the slotted dataclasses they were): built once
# per resource, in about a quarter of a dataclass's time (docs/performance.md "The core's records").


# Systems, codes and references repeat across a large export (every Procedure names its
# patient and encounter): interned, each is held once, which keeps memory in proportion to the
# number of visits rather than of resources (bench/bench_process.py).
_intern = sys.intern


def codings(concept: object) -> tuple[CodingTuple, ...]:
    """(system, code, display) of a CodeableConcept's codings that have a system and a code."""
    if not isinstance(concept, dict):
        return ()
    found = []
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("system") and coding.get("code"):
            system, code = _intern(str(coding["system"])), _intern(str(coding["code"]))
            found.append((system, code, _intern(str(coding.get("display", "")))))
    return tuple(found)


def identifiers(values: object) -> tuple[tuple[str, str, str], ...]:
    """(system, value, type code) of the identifiers that have a value (an absent system is
    ""; the type is the first code of Identifier.type)."""
    found = []
    for ident in values if isinstance(values, list) else ():
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            system = ident.get("system")
            types = codings(ident.get("type"))
            found.append(
                (
                    system if isinstance(system, str) else "",
                    ident["value"],
                    types[0][1] if types else "",
                )
            )
    return tuple(found)


def concept_text(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    text = concept.get("text")
    if text:
        return str(text)
    for _, code, display in codings(concept):
        return display or code
    return ""


def reference(value: object) -> str | None:
    """The `reference` string of a Reference, as written (normalised by the index)."""
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        return _intern(value["reference"])
    return None


def references(values: object, norm: Callable[[str | None], str | None]) -> tuple[str, ...]:
    """The references of a list of Reference elements, normalised (`norm`); () for anything
    but a list."""
    if not isinstance(values, list):
        return ()
    return tuple(r for r in (norm(reference(v)) for v in values) if r)


def normalize(ref: str | None, aliases: Mapping[str, str]) -> str | None:
    """A reference as `Type/id`: a Bundle entry's fullUrl by `aliases` (fullUrl → `Type/id`),
    absolute URLs and `_history` stripped; `urn:` and contained (`#`) references as written."""
    if ref is None:
        return None
    if ref in aliases:
        return aliases[ref]
    if ref.startswith(("urn:uuid:", "urn:oid:", "#")):
        return ref
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:]) if len(parts) >= 2 else ref


def _mapping(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def identifier_pairs(values: object) -> tuple[tuple[str, str], ...]:
    pairs = []
    for ident in values if isinstance(values, list) else [values]:
        if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
            pairs.append((str(ident["system"]), str(ident["value"])))
    return tuple(pairs)


class PerformerFacts(Struct):
    actor: str | None
    functions: tuple[CodingTuple, ...]
    period_start: Any = None
    period_end: Any = None
    has_period: bool = False


class ProcedureFacts(Struct):
    key: str
    encounter: str | None
    subject: str | None
    status: str
    codings: tuple[CodingTuple, ...]
    minutes_value: Any  # the configured extension's Duration/Quantity, as written
    performed_start: Any
    performed_end: Any
    performed_has_period: bool
    performed_datetime: Any
    performers: list[PerformerFacts]
    body_sites: tuple[CodingTuple, ...]
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    based_on: tuple[str, ...]
    reason_codes: tuple[tuple[CodingTuple, ...], ...] = ()  # each reasonCode's codings
    code_text: str = ""  # Procedure.code.text, as written


def procedure_facts(
    resource: Json, key: str, minutes_url: str, whole: bool = True
) -> ProcedureFacts:
    """A Procedure's facts. `whole` False: only what the one-on-one check reads of another
    patient's procedure (status, code, period, performers, encounter, subject) — a day read
    from the EHR brings every procedure of its performers over three days, read only for it."""
    period = resource.get("performedPeriod")
    facts = ProcedureFacts(
        key=key,
        encounter=reference(resource.get("encounter")),
        subject=reference(resource.get("subject")),
        status=_intern(str(resource.get("status", ""))),
        codings=codings(resource.get("code")),
        minutes_value=None,
        performed_start=period.get("start") if isinstance(period, dict) else None,
        performed_end=period.get("end") if isinstance(period, dict) else None,
        performed_has_period=isinstance(period, dict),
        performed_datetime=None,
        performers=[_performer(p) for p in resource.get("performer") or () if isinstance(p, dict)],
        body_sites=(),
        reasons=(),
        notes=(),
        based_on=(),
    )
    if not whole:
        return facts
    facts.minutes_value = _extension_value(resource, minutes_url)
    facts.performed_datetime = resource.get("performedDateTime")
    facts.body_sites = tuple(c for site in resource.get("bodySite") or [] for c in codings(site))
    facts.reasons = _reasons(resource)
    facts.notes = tuple(
        str(n["text"]) for n in resource.get("note") or () if isinstance(n, dict) and n.get("text")
    )
    facts.based_on = tuple(r for r in (reference(x) for x in resource.get("basedOn") or ()) if r)
    facts.reason_codes = tuple(
        found for found in (codings(x) for x in resource.get("reasonCode") or ()) if found
    )
    facts.code_text = str((resource.get("code") or {}).get("text") or "")
    return facts


def _reasons(resource: Json) -> tuple[str, ...]:
    """Reason references, then the text or first code of each reason code."""
    found = [r for r in (reference(x) for x in resource.get("reasonReference") or ()) if r]
    found += [t for t in (concept_text(x) for x in resource.get("reasonCode") or ()) if t]
    return tuple(found)


def _performer(performer: Json) -> PerformerFacts:
    facts = PerformerFacts(reference(performer.get("actor")), codings(performer.get("function")))
    for ext in performer.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == PERFORMER_PERIOD_URL:
            period = ext.get("valuePeriod")
            facts.has_period = True
            if isinstance(period, dict):
                facts.period_start, facts.period_end = period.get("start"), period.get("end")
    return facts


def _extension_value(resource: Json, url: str) -> object:
    for ext in resource.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == url:
            return ext.get("valueDuration", ext.get("valueQuantity", ext))
    return None


class EncounterFacts(Struct):
    key: str
    status: str | None
    subject: str | None
    period_start: Any
    period_end: Any
    service_provider: str | None
    accounts: tuple[str, ...]
    diagnoses: list[tuple[str | None, int]]  # (Condition reference, rank)
    service_types: tuple[CodingTuple, ...]
    total_timed_value: Any = None  # the total-timed-minutes extension's value, as written
    locations: tuple[str, ...] = ()  # Encounter.location.location references
    # Encounter.participant: (individual reference, type codings), e.g. a supervising therapist
    participants: tuple[tuple[str, tuple[CodingTuple, ...]], ...] = ()
    identifiers: tuple[tuple[str, str, str], ...] = ()  # (system, value, type): visit numbers


def encounter_facts(resource: Json, key: str, total_timed_url: str) -> EncounterFacts:
    period = _mapping(resource.get("period"))
    diagnoses = []
    for index, diagnosis in enumerate(resource.get("diagnosis") or ()):
        if isinstance(diagnosis, dict):
            rank = diagnosis.get("rank")
            diagnoses.append(
                (
                    reference(diagnosis.get("condition")),
                    rank if isinstance(rank, int) else 1000 + index,
                )
            )
    return EncounterFacts(
        key=key,
        status=resource.get("status"),
        subject=reference(resource.get("subject")),
        period_start=period.get("start"),
        period_end=period.get("end"),
        service_provider=reference(resource.get("serviceProvider")),
        accounts=tuple(r for r in (reference(a) for a in resource.get("account") or ()) if r),
        diagnoses=diagnoses,
        service_types=codings(resource.get("serviceType")),
        total_timed_value=_extension_value(resource, total_timed_url),
        locations=tuple(
            r
            for r in (
                reference(x.get("location"))
                for x in resource.get("location") or ()
                if isinstance(x, dict)
            )
            if r
        ),
        participants=tuple(
            (ref, tuple(c for t in p.get("type") or () for c in codings(t)))
            for p in resource.get("participant") or ()
            if isinstance(p, dict) and (ref := reference(p.get("individual")))
        ),
        identifiers=identifiers(resource.get("identifier")),
    )


class CoverageFacts(Struct):
    key: str
    beneficiary: str | None
    status: str | None
    period_start: Any
    period_end: Any
    order: int
    payors: list[tuple[str | None, tuple[tuple[str, str], ...]]]  # (reference, inline identifiers)


def coverage_facts(resource: Json, key: str) -> CoverageFacts:
    period = _mapping(resource.get("period"))
    order = resource.get("order")
    return CoverageFacts(
        key=key,
        beneficiary=reference(resource.get("beneficiary")),
        status=resource.get("status"),
        period_start=period.get("start"),
        period_end=period.get("end"),
        order=order if isinstance(order, int) else 1000,
        payors=[
            (reference(p), identifier_pairs(p.get("identifier")))
            for p in resource.get("payor") or ()
            if isinstance(p, dict)
        ],
    )


class ObservationFacts(Struct):
    key: str
    part_of: tuple[str, ...]
    encounter: str | None
    has_value: bool
    name: str = ""  # code.text, else the first coding's display or code
    value_kind: str = ""  # "quantity", "boolean", "string", "code" … ("" without a value)
    value_text: str = ""  # a valueString as written (numbers with units in it may measure)


_VALUE_KEYS = (
    ("valueQuantity", "quantity"),
    ("valueCodeableConcept", "code"),
    ("valueString", "string"),
    ("valueBoolean", "boolean"),
    ("valueInteger", "quantity"),
    ("valueRange", "quantity"),
    ("valueRatio", "quantity"),
)


def _value(element: Json) -> tuple[str, str]:
    for key, kind in _VALUE_KEYS:
        if key in element:
            value = element[key]
            return kind, value if isinstance(value, str) else ""
    return "", ""


def observation_facts(resource: Json, key: str) -> ObservationFacts:
    """An Observation as measure of the procedures it is part of. Its value's kind decides
    whether it measures (a boolean "tolerated" does not: Pub 100-02 ch.15 §220.3)."""
    kind, text = _value(resource)
    for component in resource.get("component") or ():
        if kind and kind != "boolean":
            break
        if isinstance(component, dict):
            found, found_text = _value(component)
            if found and (not kind or kind == "boolean"):
                kind, text = found, found_text
    status = resource.get("status")
    return ObservationFacts(
        key=key,
        part_of=tuple(r for r in (reference(p) for p in resource.get("partOf") or ()) if r),
        encounter=reference(resource.get("encounter")),
        has_value=bool(kind) and status not in ("entered-in-error", "cancelled"),
        name=concept_text(resource.get("code")),
        value_kind=kind,
        value_text=text,
    )
