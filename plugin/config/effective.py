"""Managed configuration: after the first start the database is the source of truth for code
mapping tables and the payer rule set; config/ is the factory default imported as version 1.

One validation for files and the admin API (the same marshmallow schemas), so the two cannot
drift; a change is validated whole, against every other table, before it is stored.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import orjson
import yaml
from marshmallow import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from plugin.config.files import (
    MAPPINGS_DIR,
    MUE_COLUMNS,
    PTP_COLUMNS,
    Settings,
    csv_rows,
    mapping_files,
    ncci_from_rows,
    stored_rows,
    unknown_finding_codes,
    with_payer_overrides,
)
from plugin.rules.activity import Vocabulary
from plugin.rules.episode import FeeSchedule
from plugin.rules.ncci import NcciTables
from plugin.rules.payers import PayerTable
from plugin.schemas.conceptmap import load_concept_map, merge_concept_maps
from plugin.schemas.episode import FeeScheduleSchema
from plugin.schemas.site_tables import PayerTableSchema
from plugin.schemas.vocabulary import VocabularySchema
from plugin.store import Store

MAPPING, PAYERS, NCCI, FEES = "mapping", "payers", "ncci", "fees"
VOCABULARY = "vocabulary"
PAYER_TABLE = "payers"
FEE_TABLE = "fee-schedule"
VOCABULARY_TABLE = "activities"
NCCI_TABLES = ("ptp", "mue")  # an import of CMS's quarterly file replaces the shipped one
SEED_REASON = "imported from the shipped configuration at first start"
log = logging.getLogger(__name__)


def seed(store: Store, settings: Settings) -> None:
    """On the first start, import the configuration files as version 1 of each table."""
    if store.config_tables(MAPPING, include_deleted=True) or store.config_tables(PAYERS, True):
        return
    for path in mapping_files(settings.config_dir):
        store.config_save(
            MAPPING, path.name, orjson.loads(path.read_bytes()), "system", SEED_REASON, []
        )
    payers = yaml.safe_load(settings.sources["payers"].read_text(encoding="utf-8"))
    store.config_save(PAYERS, PAYER_TABLE, payers, "system", SEED_REASON, [])


def _overlay(settings: Settings, store: Store) -> Settings:
    """The settings with the mapping tables and payers the database holds now."""
    maps = {t.name: store.config_current(MAPPING, t.name) for t in store.config_tables(MAPPING)}
    contents = {name: v.content for name, v in maps.items() if v is not None and v.content}
    code_map = validate_mappings(contents, settings)
    current = store.config_current(PAYERS, PAYER_TABLE)
    payers = validate_payers(current.content if current else None, settings)
    findings = with_payer_overrides(settings.findings, payers, settings.sources["payers"])
    versions = {k: v for k, v in settings.versions.items() if not k.startswith(f"{MAPPINGS_DIR}/")}
    versions.update(
        {f"{MAPPINGS_DIR}/{name}": f"v{v.version}" for name, v in maps.items() if v is not None}
    )
    if current is not None:
        versions["payers"] = f"v{current.version}"
    ncci = _stored_ncci(settings, store, versions)
    fees = settings.fees
    stored_fees = store.config_current(FEES, FEE_TABLE)
    if stored_fees is not None and stored_fees.content:
        fees = validate_fees(stored_fees.content)
        versions["fees"] = f"v{stored_fees.version}"
    vocabulary = settings.vocabulary
    stored_vocabulary = store.config_current(VOCABULARY, VOCABULARY_TABLE)
    if stored_vocabulary is not None and stored_vocabulary.content:
        vocabulary = validate_vocabulary(stored_vocabulary.content)
        versions["vocabulary"] = f"v{stored_vocabulary.version}"
    return dataclasses.replace(
        settings,
        code_map=code_map,
        payers=payers,
        findings=findings,
        ncci=ncci,
        fees=fees,
        vocabulary=vocabulary,
        code_map_files=tuple(sorted(contents)),
        versions=versions,
    )


def _stored_ncci(settings: Settings, store: Store, versions: dict[str, str]) -> NcciTables:
    """The NCCI tables an admin imported (each replacing the shipped file), else the files."""
    ptp, mue = (store.config_current(NCCI, name) for name in NCCI_TABLES)
    if ptp is None and mue is None:
        return settings.ncci
    sources = settings.sources
    ptp_rows = (
        stored_rows((ptp.content or {}).get("rows"), PTP_COLUMNS, f"ncci/ptp v{ptp.version}")
        if ptp is not None
        else csv_rows(sources["ncci_ptp"], PTP_COLUMNS)
    )
    mue_rows = (
        stored_rows((mue.content or {}).get("rows"), MUE_COLUMNS, f"ncci/mue v{mue.version}")
        if mue is not None
        else csv_rows(sources["ncci_mue"], MUE_COLUMNS)
    )
    for name, stored in (("ncci-ptp", ptp), ("ncci-mue", mue)):
        if stored is not None:
            versions[name] = f"v{stored.version}"
    return ncci_from_rows(ptp_rows, mue_rows)


def effective_settings(settings: Settings, store: Store | None = None) -> Settings:
    """The settings every decision is made with: the database's managed mapping tables and
    payer rules over the files (`settings`, from load_settings), once they are stored; the files
    alone before. The app and its notification worker pass their store; the command line
    passes none and the configured database (THERACHARGE_DATABASE_URL) is read if it exists, so
    an admin's change reaches batch runs as it reaches the hook."""
    if store is not None:
        return _overlay(settings, store) if _managed(store) else settings
    url = settings.service.database_url
    database = make_url(url).database
    if url.startswith("sqlite") and (not database or not Path(database).exists()):
        return settings
    store = Store(url)
    try:
        return _overlay(settings, store) if _managed(store) else settings
    except SQLAlchemyError as exc:
        log.warning("managed tables not read (%s); deciding with the files", type(exc).__name__)
        return settings
    finally:
        store.engine.dispose()


def _managed(store: Store) -> bool:
    """The database holds managed tables (a service has started on it, or an admin imported)."""
    if any(store.config_tables(kind) for kind in (MAPPING, NCCI, FEES, VOCABULARY)):
        return True
    return store.config_current(PAYERS, PAYER_TABLE) is not None


def validate_mappings(contents: dict[str, Any], settings: Settings) -> Any:
    """Every table valid on its own and no source code mapped twice across tables."""
    loaded = [
        (name, load_concept_map(content, settings.catalog))
        for name, content in sorted(contents.items())
    ]
    return merge_concept_maps(loaded)


def validate_payers(content: Any, settings: Settings) -> PayerTable:
    if content is None:
        return settings.payers
    if not isinstance(content, dict):
        raise ValidationError("expected an object with default_method, default_source, payers")
    table: PayerTable = PayerTableSchema().load(content)
    unknown = unknown_finding_codes(table, settings.findings)
    if unknown:
        raise ValidationError("; ".join(unknown))
    return table


def validate_fees(content: Any) -> FeeSchedule:
    """A fee schedule as stored or sent: the schema of config/fees.yaml."""
    if not isinstance(content, dict):
        raise ValidationError("expected an object with currency and schedules")
    fees: FeeSchedule = FeeScheduleSchema().load(content)
    return fees


def _changes(before: dict[Any, Any], after: dict[Any, Any]) -> list[tuple[Any, Any, Any, str]]:
    """(key, before, after, added|removed|changed) of each entry that differs, by key."""
    found = []
    for key in sorted(set(before) | set(after)):
        was, now = before.get(key), after.get(key)
        if was != now:
            change = "added" if key not in before else "removed" if key not in after else "changed"
            found.append((key, was, now, change))
    return found


def validate_vocabulary(content: Any) -> Vocabulary:
    """A documentation vocabulary as stored or sent: the schema of config/rules/activities.yaml."""
    if not isinstance(content, dict):
        raise ValidationError("expected an object with codes, neighbours, concepts …")
    vocabulary: Vocabulary = VocabularySchema().load(content)
    return vocabulary


def vocabulary_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Concept by concept (by name and code), then section by section: what was added,
    removed or changed."""

    def concepts(content: dict[str, Any] | None) -> dict[str, Any]:
        return {
            f"{c.get('code')} {c.get('name')}": c for c in (content or {}).get("concepts") or ()
        }

    diff: list[dict[str, Any]] = []
    for key, was, now, change in _changes(concepts(old), concepts(new)):
        entry: dict[str, Any] = {"change": change, "concept": key}
        if was and now:
            entry["terms_added"] = sorted(set(now.get("terms", ())) - set(was.get("terms", ())))
            entry["terms_removed"] = sorted(set(was.get("terms", ())) - set(now.get("terms", ())))
        diff.append(entry)
    for section in ("codes", "neighbours", "negation", "skill", "vague", "measures", "review"):
        if (old or {}).get(section) != (new or {}).get(section):
            diff.append({"change": "changed", "section": section})
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
        for key, was, now, change in _changes(amounts(old), amounts(new))
    ]


def mapping_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Entry by entry: which source codes were added, removed, or now map elsewhere."""
    return [
        {"change": change, "source": key, "before": was, "after": now}
        for key, was, now, change in _changes(_entries(old), _entries(new))
    ]


def _entries(content: dict[str, Any] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for group in (content or {}).get("group") or ():
        for element in group.get("element") or ():
            targets = element.get("target") or [{}]
            found[f"{group.get('source')}|{element.get('code')}"] = str(targets[0].get("code"))
    return found


def payers_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    before = {p["id"]: p for p in (old or {}).get("payers") or ()}
    after = {p["id"]: p for p in (new or {}).get("payers") or ()}
    diff: list[dict[str, Any]] = [
        {"change": change, "payer": key} for key, _, _, change in _changes(before, after)
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
