"""A decision as R4 ChargeItems, a Provenance, and a transaction Bundle that upserts them.

Built as plain dicts (orjson-serialisable, about 550× cheaper than fhir.resources models,
docs/performance.md); tests round-trip every shape through the R4B models.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from urllib.parse import quote

from plugin.jsontypes import Json
from plugin.rules.decision import Decision
from plugin.rules.lines import ChargeLine
from plugin.rules.systems import CPT, HCPCS, PLACE_OF_SERVICE, UCUM

CPT_MODIFIERS = {"59"}  # modifier 59 is CPT; GP/GO/GN, KX, CQ/CO, X{EPSU} are HCPCS Level II
_UUID_NAMESPACE = uuid.UUID("6f1d3f0e-2b1c-4e57-9a53-5c1f0b7e2a10")


class Definitions:
    """Our URLs under one configurable base (docs/architecture.md "Modifiers"), each made once:
    every ChargeItem names several (a compiled class has no `cached_property`, and properties
    built each URL again on every read)."""

    def __init__(self, base: str) -> None:
        self.base: Final = base
        self.line_identifier: Final = f"{base}/NamingSystem/charge-line"
        # `identifier=` search value up to the key: the system and `|`, percent-encoded once
        self.line_search_prefix: Final = quote(f"{self.line_identifier}|", safe="")
        self.modifier: Final = f"{base}/StructureDefinition/charge-modifier"
        self.timed_minutes: Final = f"{base}/StructureDefinition/timed-minutes"
        self.place_of_service: Final = f"{base}/StructureDefinition/place-of-service"
        self.billing_method: Final = f"{base}/StructureDefinition/billing-method"
        self.hold_reason: Final = f"{base}/StructureDefinition/hold-reason"
        self.performer_functions: Final = f"{base}/CodeSystem/performer-function"
        self.finding_codes: Final = f"{base}/CodeSystem/finding"
        self.trigger_codes: Final = f"{base}/CodeSystem/trigger"
        self.method_codes: Final = f"{base}/CodeSystem/billing-method"


@dataclass(frozen=True, slots=True)
class RenderContext:
    definitions: Definitions
    entered: datetime  # when this run decided (enteredDate, Provenance.recorded)
    agent: str  # "TheraCharge 0.1.0"
    trigger: str = ""  # what asked for the decision: cds-hook, notification, cli, page, api
    configuration: Mapping[str, str] = field(default_factory=dict)  # table → version in force
    policy: tuple[str, ...] = ()  # the configuration as Provenance.policy URIs (policy_uris)


def policy_uris(base: str, configuration: Mapping[str, str]) -> tuple[str, ...]:
    """One URI per configuration table in force: {base}/configuration/{table}/{version}."""
    return tuple(
        f"{base}/configuration/{quote(table)}/{quote(version, safe='')}"
        for table, version in sorted(configuration.items())
    )


def stable_urn(name: str) -> str:
    """`urn:uuid:` + the name-based (SHA-1, version 5) UUID of `name`."""
    return f"urn:uuid:{name_uuid(_UUID_NAMESPACE, name)}"


def name_uuid(namespace: uuid.UUID, name: str) -> str:
    """`str(uuid.uuid5(namespace, name))` (RFC 4122 §4.3), formatted without building UUID
    objects (hot path: every ChargeItem and card has one)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def full_url(definitions: Definitions, line: ChargeLine) -> str:
    """A stable urn:uuid for a line, so the same input renders the same Bundle."""
    return stable_urn(f"{definitions.line_identifier}|{line.key}")


_PLAIN_KEY = re.compile(r"[A-Za-z0-9\-._~/]*")


def _encoded_key(key: str) -> str:
    """A line key for a search URL: keys are FHIR ids, dates and codes joined by `/`."""
    if _PLAIN_KEY.fullmatch(key):
        return key.replace("/", "%2F")
    return quote(key, safe="")


def charge_item(line: ChargeLine, decision: Decision, ctx: RenderContext) -> Json:
    """One R4 ChargeItem for a charge line of the day (docs/architecture.md "Status", "Modifiers",
    "Idempotency"; docs/architecture.md "The billing day").

    `context` is the first of the day's encounters whose procedures the line counts (by
    encounter start, then reference); the others are in `supportingInformation`.
    """
    visit = decision.visit
    defs = ctx.definitions
    visits = [v for v in decision.visits if v.encounter in line.encounters] or [visit]
    item: Json = {
        "resourceType": "ChargeItem",
        "extension": _extensions(line, decision, defs),
        "identifier": [{"system": defs.line_identifier, "value": line.key}],
        "status": line.status.value,
        "code": {"coding": [{"system": line.system, "code": line.code}], "text": line.label},
        "subject": {"reference": visit.patient} if visit.patient else {"display": "unknown"},
        "context": {"reference": line.context or visit.encounter},
        **_occurrence(line),
        "performer": _performers(line, defs),
        "quantity": {"value": line.units},
        "bodysite": _body_sites(line),
        "reason": [
            {"coding": [{"system": c.system, "code": c.code} for c in d.codings]}
            for d in line.diagnoses
        ],
        "service": [{"reference": s.reference} for s in line.services],
        "account": [{"reference": a} for a in dict.fromkeys(a for v in visits for a in v.accounts)],
        "supportingInformation": [{"reference": e} for e in line.encounters[1:]],
        "enteredDate": ctx.entered.isoformat(),
    }
    if line.provider:
        item["performingOrganization"] = {"reference": line.provider}
    if line.price is not None:
        item["priceOverride"] = {"value": float(line.price), "currency": line.currency}
        item["overrideReason"] = line.price_basis
    if line.note:
        item["note"] = [{"text": line.note}]
    return {k: v for k, v in item.items() if v != []}


def _extensions(line: ChargeLine, decision: Decision, defs: Definitions) -> list[Json]:
    extensions: list[Json] = [
        {
            "url": defs.modifier,
            "valueCodeableConcept": {
                "coding": [{"system": CPT if m in CPT_MODIFIERS else HCPCS, "code": m}]
            },
        }
        for m in line.modifiers
    ]
    if line.kind.value != "untimed":
        extensions.append(
            {
                "url": defs.timed_minutes,
                "valueQuantity": {
                    "value": line.minutes,
                    "unit": "min",
                    "system": UCUM,
                    "code": "min",
                },
            }
        )
    extensions.append(
        {
            "url": defs.place_of_service,
            "valueCoding": {"system": PLACE_OF_SERVICE, "code": decision.visit.place_of_service},
        }
    )
    extensions.append(
        {
            "url": defs.billing_method,
            "valueCoding": {"system": defs.method_codes, "code": decision.visit.method.value},
        }
    )
    seen: set[str] = set()
    for hold in line.holds:
        if hold.code not in seen:
            seen.add(hold.code)
            extensions.append(
                {
                    "url": defs.hold_reason,
                    "valueCoding": {"system": defs.finding_codes, "code": hold.code},
                }
            )
    return extensions


def _occurrence(line: ChargeLine) -> Json:
    starts = [s.start for s in line.services if s.start]
    ends = [s.end for s in line.services if s.end]
    if starts and ends:
        return {
            "occurrencePeriod": {"start": min(starts).isoformat(), "end": max(ends).isoformat()}
        }
    if line.date:
        return {"occurrenceDateTime": line.date}
    return {}


# ChargeItem.performer.function of the therapist who supervised an assistant's service: the
# claim's supervising provider (ASC X12 837P loop 2310D; Pub 100-02 ch.15 §230.1 B, §230.2 B).
SUPERVISING = "supervising"


def _performers(line: ChargeLine, defs: Definitions) -> list[Json]:
    seen: set[tuple[str, str | None]] = set()
    performers = []
    for service in line.services:
        for performer in service.performers:
            if performer.reference is None:
                continue
            key = (performer.reference, performer.role.value if performer.role else None)
            if key in seen:
                continue
            seen.add(key)
            entry: Json = {"actor": {"reference": performer.reference}}
            if performer.role_coding:
                system, code = performer.role_coding
                entry["function"] = {"coding": [{"system": system, "code": code}]}
            performers.append(entry)
    # the supervisor named as such even when they also performed part of the line (an OT with
    # an OTA's CO line, as a PT with a PTA's CQ line): the claim's supervising provider is read
    # from this function, not from the performer's own role
    for supervisor in dict.fromkeys(s.supervisor for s in line.services if s.supervisor):
        performers.append(
            {
                "function": {
                    "coding": [{"system": defs.performer_functions, "code": SUPERVISING}],
                    "text": "Supervising therapist",
                },
                "actor": {"reference": supervisor},
            }
        )
    return performers


def _body_sites(line: ChargeLine) -> list[Json]:
    seen: set[tuple[str, str]] = set()
    sites = []
    for service in line.services:
        for site in service.body_sites:
            if (site.system, site.code) not in seen:
                seen.add((site.system, site.code))
                sites.append({"coding": [{"system": site.system, "code": site.code}]})
    return sites


def provenance_id(decision: Decision) -> str:
    """One Provenance per billing day, updated on each write (R4 Provenance has no identifier;
    its history keeps every earlier write). A FHIR id: the date and a digest of the day."""
    digest = hashlib.sha256(decision.day.encode()).hexdigest()[:20]
    day = re.sub(r"[^0-9-]", "", decision.visit.date_of_service or "undated") or "undated"
    return f"theracharge-{day}-{digest}"


def provenance(decision: Decision, targets: list[str], ctx: RenderContext) -> Json:
    """TheraCharge as the assembling agent, the procedures as sources, and what decided it:
    the trigger (`reason`) and the version of every configuration table in force (`policy`,
    one URI per table: {base}/configuration/{table}/{version})."""
    sources = sorted({s.reference for line in decision.lines for s in line.services})
    base = ctx.definitions.base
    prov: Json = {
        "resourceType": "Provenance",
        "id": provenance_id(decision),
        "target": [{"reference": t} for t in targets],
        "recorded": ctx.entered.isoformat(),
        "policy": list(ctx.policy or policy_uris(base, ctx.configuration)),
        "reason": [
            {
                "coding": [{"system": ctx.definitions.trigger_codes, "code": ctx.trigger}],
                "text": f"decided on {ctx.trigger}",
            }
        ]
        if ctx.trigger
        else [],
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                        }
                    ]
                },
                "who": {"display": ctx.agent},
            }
        ],
        "entity": [{"role": "source", "what": {"reference": s}} for s in sources],
    }
    return {k: v for k, v in prov.items() if v != []}


def transaction_entries(decision: Decision, ctx: RenderContext) -> list[Json]:
    """Entries that upsert each ChargeItem by identifier, then the Provenance.

    A conditional update on the identifier makes a re-post converge on the same ChargeItems
    instead of duplicating them (docs/architecture.md "Idempotency").
    """
    defs = ctx.definitions
    entries: list[Json] = []
    for line in decision.lines:
        query = defs.line_search_prefix + _encoded_key(line.key)
        entries.append(
            {
                "fullUrl": full_url(defs, line),
                "resource": charge_item(line, decision, ctx),
                "request": {"method": "PUT", "url": f"ChargeItem?identifier={query}"},
            }
        )
    if entries:
        entries.append(provenance_entry(decision, [str(e["fullUrl"]) for e in entries], ctx))
    return entries


def provenance_entry(decision: Decision, targets: list[str], ctx: RenderContext) -> Json:
    """The transaction entry that writes the day's Provenance over `targets` (one per day,
    replaced on each write; the server's history keeps the earlier ones)."""
    prov = provenance(decision, targets, ctx)
    return {
        "fullUrl": stable_urn(prov["id"]),
        "resource": prov,
        "request": {"method": "PUT", "url": f"Provenance/{prov['id']}"},
    }
