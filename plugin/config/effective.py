"""Managed configuration: after the first start the database is the source of truth for code
mapping tables and the payer rule set (and, once an admin saves them, every other managed
table: plugin/config/tables.py); config/ is the factory default imported as version 1.

One validation for files and the admin API (the same marshmallow schemas), so the two cannot
drift; a change is validated whole, against every other table, before it is stored.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import orjson
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
)
from plugin.config.tables import PAYERS, TABLES, changes
from plugin.rules.ncci import NcciTables
from plugin.schemas.conceptmap import load_concept_map, merge_concept_maps
from plugin.store import Store

MAPPING, NCCI = "mapping", "ncci"
NCCI_TABLES = ("ptp", "mue")  # an import of CMS's quarterly file replaces the shipped one
SEED_REASON = "imported from the shipped configuration at first start"
log = logging.getLogger(__name__)


def seed(store: Store, settings: Settings) -> None:
    """On the first start, import the configuration files as version 1 of each table."""
    if store.config_tables(MAPPING, True) or store.config_tables(PAYERS.kind, True):
        return
    seeded = [
        (MAPPING, path.name, orjson.loads(path.read_bytes()))
        for path in mapping_files(settings.config_dir)
    ]
    seeded.append((PAYERS.kind, PAYERS.name, PAYERS.shipped(settings)))
    for kind, name, content in seeded:
        version = store.config_save(kind, name, content, "system", SEED_REASON, [])
        store.audit("system", "seed", kind, name, {"version": version, "reason": SEED_REASON})


def _overlay(settings: Settings, store: Store) -> Settings:
    """The settings with the managed tables the database holds now: the mapping tables, the
    NCCI tables an admin imported, and every table of the registry (plugin/config/tables.py)."""
    maps = {t.name: store.config_current(MAPPING, t.name) for t in store.config_tables(MAPPING)}
    contents = {name: v.content for name, v in maps.items() if v is not None and v.content}
    versions = {k: v for k, v in settings.versions.items() if not k.startswith(f"{MAPPINGS_DIR}/")}
    versions.update(
        {f"{MAPPINGS_DIR}/{name}": f"v{v.version}" for name, v in maps.items() if v is not None}
    )
    settings = dataclasses.replace(
        settings,
        code_map=validate_mappings(contents, settings),
        code_map_files=tuple(sorted(contents)),
        ncci=_stored_ncci(settings, store, versions),
    )
    for table in TABLES:
        stored = store.config_current(table.kind, table.name)
        if stored is not None and stored.content:
            settings = table.apply(settings, table.load(stored.content, settings))
            versions[table.version_key] = f"v{stored.version}"
    return dataclasses.replace(settings, versions=versions)


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
    kinds = (MAPPING, NCCI, *(table.kind for table in TABLES))
    return any(store.config_tables(kind) for kind in kinds)


def validate_mappings(contents: dict[str, Any], settings: Settings) -> Any:
    """Every table valid on its own and no source code mapped twice across tables."""
    loaded = [
        (name, load_concept_map(content, settings.catalog))
        for name, content in sorted(contents.items())
    ]
    return merge_concept_maps(loaded)


def mapping_diff(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Entry by entry: which source codes were added, removed, or now map elsewhere."""
    return [
        {"change": change, "source": key, "before": was, "after": now}
        for key, was, now, change in changes(_entries(old), _entries(new))
    ]


def _entries(content: dict[str, Any] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for group in (content or {}).get("group") or ():
        for element in group.get("element") or ():
            targets = element.get("target") or [{}]
            found[f"{group.get('source')}|{element.get('code')}"] = str(targets[0].get("code"))
    return found
