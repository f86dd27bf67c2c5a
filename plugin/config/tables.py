"""The managed tables an admin replaces whole, one entry each: what it is called, its schema,
how it is validated and applied to the settings decisions use, how two versions differ, which
shipped file is its version 0, and how the admin API shows it. Everything else is driven by
this registry: the overlay of the database's tables on the files (plugin/config/effective.py),
the save, the rollback and the content in force (plugin/config/edits.py), the admin API's
routes and their entries in /openapi.json (plugin/web/admin.py). A new table is one entry here
(docs/architecture.md "Where a change belongs").

The mapping tables (many, named by file) and the NCCI tables (imported from CMS's files) are
managed too, with routes of their own shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from marshmallow import Schema, ValidationError

from plugin.config.files import Settings, unknown_finding_codes, with_payer_overrides
from plugin.schemas.episode import FeeScheduleSchema
from plugin.schemas.outlet import OutletSiteSchema
from plugin.schemas.site_tables import PayerTableSchema, PractitionerTableSchema
from plugin.schemas.vocabulary import VocabularySchema

Diff = Callable[[dict[str, Any] | None, dict[str, Any] | None], list[dict[str, Any]]]


@dataclass(frozen=True)
class Table:
    """One managed table replaced whole. `kind` and `name` key its versions in the database
    (and its audit entries); `path` is its admin API path (/admin/api/v1/{path}) and `field`
    the request body's field holding the content; `version_key` names it in
    `Settings.versions` and in every report's and Provenance's configuration; `source` is the
    key of its shipped file in `Settings.sources`."""

    kind: str
    name: str
    path: str
    field: str
    title: str  # "the payer rules": in messages ("say why the payer rules change")
    summary: str  # what it holds, for the API document
    schema: type[Schema]
    version_key: str
    source: str
    load: Callable[[Any, Settings], Any]  # content → the value decisions use (ValidationError)
    apply: Callable[[Settings, Any], Settings]  # the settings with that value in force
    diff: Diff
    example: dict[str, Any]  # a content the API document shows (tests/web/test_openapi.py)

    def shipped(self, settings: Settings) -> dict[str, Any]:
        """The shipped file's content as the API sends it (dates as ISO strings)."""
        return json_content(yaml.safe_load(settings.sources[self.source].read_text("utf-8")))


def json_content(raw: dict[str, Any]) -> dict[str, Any]:
    """A table read from YAML as the API sends and stores it: dates as ISO strings, keys as
    strings (an unquoted code, 97110:, is the string "97110")."""
    content: dict[str, Any] = orjson.loads(orjson.dumps(raw, option=orjson.OPT_NON_STR_KEYS))
    return content


def _object(content: Any, expected: str) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise ValidationError(f"expected an object with {expected}")
    return content


def load_payers(content: Any, settings: Settings) -> Any:
    """The payer rule set (config/payers.yaml's shape), its findings' severities known."""
    table = PayerTableSchema().load(_object(content, "default_method, default_source, payers"))
    unknown = unknown_finding_codes(table, settings.findings)
    if unknown:
        raise ValidationError("; ".join(unknown))
    return table


def _with_payers(settings: Settings, table: Any) -> Settings:
    findings = with_payer_overrides(settings.findings, table, settings.sources["payers"])
    return dataclasses.replace(settings, payers=table, findings=findings)


def load_fees(content: Any, _: Settings | None = None) -> Any:
    """A fee schedule (config/fees.yaml's shape)."""
    return FeeScheduleSchema().load(_object(content, "currency and schedules"))


def load_vocabulary(content: Any, _: Settings | None = None) -> Any:
    """A documentation vocabulary (config/rules/activities.yaml's shape), every pattern
    compiled."""
    return VocabularySchema().load(_object(content, "codes, neighbours, concepts …"))


def changes(before: dict[Any, Any], after: dict[Any, Any]) -> list[tuple[Any, Any, Any, str]]:
    """(key, before, after, added|removed|changed) of each entry that differs, by key."""
    found = []
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        if was != now:
            change = "added" if key not in before else "removed" if key not in after else "changed"
            found.append((key, was, now, change))
    return found


def payers_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Payer by payer (added, removed, changed), then the defaults."""
    before = {p["id"]: p for p in (old or {}).get("payers") or ()}
    after = {p["id"]: p for p in (new or {}).get("payers") or ()}
    diff: list[dict[str, Any]] = [
        {"change": change, "payer": key} for key, _, _, change in changes(before, after)
    ]
    for field in ("default_method", "default_source"):
        if (old or {}).get(field) != (new or {}).get(field):
            diff.append(
                {
                    "change": "changed",
                    "field": field,
                    "before": (old or {}).get(field),
                    "after": (new or {}).get(field),
                }
            )
    return diff


def fees_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Schedule by schedule, code by code: which amounts were added, removed or changed."""

    def amounts(content: dict[str, Any] | None) -> dict[tuple[str, str], str]:
        return {
            (str(s.get("effective")), str(code)): str(amount)
            for s in (content or {}).get("schedules") or ()
            for code, amount in (s.get("amounts") or {}).items()
        }

    return [
        {"change": change, "effective": key[0], "code": key[1], "before": was, "after": now}
        for key, was, now, change in changes(amounts(old), amounts(new))
    ]


def vocabulary_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Concept by concept (by name and code), then section by section: what was added,
    removed or changed."""

    def concepts(content: dict[str, Any] | None) -> dict[str, Any]:
        return {
            f"{c.get('code')} {c.get('name')}": c for c in (content or {}).get("concepts") or ()
        }

    diff: list[dict[str, Any]] = []
    for key, was, now, change in changes(concepts(old), concepts(new)):
        entry: dict[str, Any] = {"change": change, "concept": key}
        if was and now:
            entry["terms_added"] = sorted(set(now.get("terms", ())) - set(was.get("terms", ())))
            entry["terms_removed"] = sorted(set(was.get("terms", ())) - set(now.get("terms", ())))
        diff.append(entry)
    for section in (
        "codes", "neighbours", "negation", "skill", "vague", "measures", "review", "context",
        "sections", "steps", "aliases", "senses",
    ):  # fmt: skip
        if (old or {}).get(section) != (new or {}).get(section):
            diff.append({"change": "changed", "section": section})
    return diff


PAYERS = Table(
    kind="payers",
    name="payers",
    path="payers",
    field="payers",
    title="the payer rules",
    summary="The payer rule set: default method, payers, identifiers, modifiers, NCCI and "
    "episode policies, finding severities (config/payers.yaml's shape)",
    schema=PayerTableSchema,
    version_key="payers",
    source="payers",
    load=load_payers,
    apply=_with_payers,
    diff=payers_diff,
    example={
        "default_method": "cms",
        "default_source": "CMS Pub 100-04 ch.5 §20.2",
        "payers": [
            {
                "id": "acme-commercial",
                "name": "Acme Commercial",
                "method": "ama",
                "identifiers": [{"system": "http://example.org/payer-id", "value": "ACME1"}],
                "source": "Acme provider manual 2026, therapy services",
            }
        ],
    },
)
FEES = Table(
    kind="fees",
    name="fee-schedule",
    path="fees",
    field="fees",
    title="the fee schedule",
    summary="The fee schedule: currency and dated schedules of allowed amounts per code "
    "(config/fees.yaml's shape)",
    schema=FeeScheduleSchema,
    version_key="fees",
    source="fees",
    load=load_fees,
    apply=lambda settings, fees: dataclasses.replace(settings, fees=fees),
    diff=fees_diff,
    example={
        "currency": "USD",
        "schedules": [
            {"effective": "2027-01-01", "source": "contract", "amounts": {"97110": 31.25}}
        ],
    },
)
VOCABULARY = Table(
    kind="vocabulary",
    name="activities",
    path="vocabulary",
    field="vocabulary",
    title="the vocabulary",
    summary="The documentation vocabulary: codes and their distinctions, neighbour groups, "
    "concepts (terms, SNOMED codes, measure names, weight, source), negation, skill, vague "
    "phrases, measure patterns, review thresholds (config/rules/activities.yaml's shape)",
    schema=VocabularySchema,
    version_key="vocabulary",
    source="vocabulary",
    load=load_vocabulary,
    apply=lambda settings, vocabulary: dataclasses.replace(settings, vocabulary=vocabulary),
    diff=vocabulary_diff,
    example={
        "codes": {
            "97112": {
                "name": "neuromuscular re-education",
                "distinction": "balance, coordination, proprioception",
                "source": "CPT 2026",
            }
        },
        "neighbours": [],
        "concepts": [
            {
                "name": "balance on reduced or unstable support",
                "code": "97112",
                "weight": 3,
                "terms": ["single leg stance", "SLS", "foam"],
                "source": "CPT 2026, 97112",
            }
        ],
        "negation": {
            "before": ["no"],
            "after": ["not tolerated"],
            "sentence": ["declined"],
            "stop": ["but"],
            "window": 3,
            "source": "NegEx (Chapman et al., 2001)",
        },
        "skill": {"terms": ["cueing"], "source": "Pub 100-02 ch.15 §220.2 B"},
        "vague": {"terms": ["as above"], "source": "Pub 100-02 ch.15 §220.3 E"},
        "measures": {
            "patterns": {"degrees": "\\d+ ?(?:deg|degrees)"},
            "source": "Pub 100-02 ch.15 §220.3",
        },
        "review": {"strong": 3, "confidence": 0.6, "source": "our review thresholds"},
    },
)


def load_practitioners(content: Any, _: Settings | None = None) -> Any:
    """The site's practitioner table (config/practitioners.yaml's shape)."""
    return PractitionerTableSchema().load(_object(content, "source and practitioners"))


def practitioners_diff(
    old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Practitioner by practitioner (reference or NPI): added, removed, or a changed role."""

    def entries(content: dict[str, Any] | None) -> dict[str, Any]:
        return {
            str(e.get("reference") or f"NPI|{e.get('npi')}"): e
            for e in (content or {}).get("practitioners") or ()
        }

    return [
        {
            "change": change,
            "practitioner": key,
            "before": (was or {}).get("role"),
            "after": (now or {}).get("role"),
        }
        for key, was, now, change in changes(entries(old), entries(new))
    ]


PRACTITIONERS = Table(
    kind="practitioners",
    name="practitioners",
    path="practitioners",
    field="practitioners",
    title="the practitioner table",
    summary="The site's practitioners whose role the EHR does not say, by reference or NPI, "
    "with the role and where the site knows it from (config/practitioners.yaml's shape)",
    schema=PractitionerTableSchema,
    version_key="practitioners",
    source="practitioners",
    load=load_practitioners,
    apply=lambda settings, table: dataclasses.replace(settings, practitioners=table),
    diff=practitioners_diff,
    example={
        "source": "Site credentialing records",
        "practitioners": [
            {"npi": "1234567893", "role": "PTA", "source": "HR credential file 2026-11"}
        ],
    },
)


def load_outlet(content: Any, settings: Settings | None = None) -> Any:
    """The charge outlet's site settings (config/outlet.yaml's shape); a version that lacks
    what the outlet in use needs is refused (THERACHARGE_OUTLET)."""
    site = OutletSiteSchema().load(_object(content, "source, hl7v2 and oracle_health"))
    kind = settings.outlet.kind if settings is not None else "fhir"
    missing = site.missing(kind)
    if missing:
        raise ValidationError(
            {name: [f"needed with THERACHARGE_OUTLET={kind}"] for name in missing}
        )
    return site


def outlet_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Setting by setting, per outlet: added, removed or changed."""

    def settings(content: dict[str, Any] | None) -> dict[str, Any]:
        return {
            f"{outlet}.{name}": value
            for outlet, section in (content or {}).items()
            if isinstance(section, dict)
            for name, value in section.items()
        }

    return [
        {"change": change, "setting": key, "before": was, "after": now}
        for key, was, now, change in changes(settings(old), settings(new))
    ]


OUTLET = Table(
    kind="outlet",
    name="outlet",
    path="outlet",
    field="outlet",
    title="the charge outlet's site settings",
    summary="How the site's billing system wants its charges written (config/outlet.yaml's "
    "shape): for HL7 v2, the version, the message header's applications and facilities, the "
    "identifier systems, the credit style, where modifiers go, the charge code and locations",
    schema=OutletSiteSchema,
    version_key="outlet",
    source="outlet",
    load=load_outlet,
    apply=lambda settings, table: dataclasses.replace(settings, outlet_site=table),
    diff=outlet_diff,
    example={
        "source": "Billing interface specification v3, 2026-10",
        "hl7v2": {"version": "2.3.1", "receiving_application": "PBS", "credit": "negative"},
    },
)
# In the order they are applied (the payer rules first: they set the findings' severities).
TABLES: tuple[Table, ...] = (PAYERS, FEES, VOCABULARY, PRACTITIONERS, OUTLET)
BY_KIND = {table.kind: table for table in TABLES}
