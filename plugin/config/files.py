"""Settings: the shipped config/ tables, a site's own config directory, THERACHARGE_* variables."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import yaml
from marshmallow import Schema, ValidationError

from plugin.config.variables import (
    OutletConnection,
    ServiceConfig,
    fhir_connection,
    outlet_connection,
    service_config,
    url_setting,
)
from plugin.errors import describe
from plugin.gateway.connection import FhirConnection
from plugin.rules.activity import Vocabulary
from plugin.rules.code_mapping import CodeMap
from plugin.rules.episode import EpisodeRules, FeeSchedule
from plugin.rules.findings import FindingPolicy
from plugin.rules.model import Catalog
from plugin.rules.ncci import Mue, NcciTables, PtpEdit
from plugin.rules.parameters import UnitParameters
from plugin.rules.payers import CodingTables, PayerTable, PractitionerTable
from plugin.schemas.catalog import CatalogSchema
from plugin.schemas.conceptmap import load_concept_map, merge_concept_maps
from plugin.schemas.episode import EpisodeRulesSchema, FeeScheduleSchema
from plugin.schemas.errors import ConfigError, field_errors
from plugin.schemas.findings import FindingRegistrySchema
from plugin.schemas.outlet import OutletSite, OutletSiteSchema
from plugin.schemas.site_tables import CodingTablesSchema, PayerTableSchema, PractitionerTableSchema
from plugin.schemas.unit_rules import UnitRulesSchema
from plugin.schemas.vocabulary import VocabularySchema

ENV_CONFIG_DIR = "THERACHARGE_CONFIG_DIR"
ENV_EXTENSION_BASE = "THERACHARGE_EXTENSION_BASE_URL"
ENV_MINUTES_EXTENSION = "THERACHARGE_MINUTES_EXTENSION_URL"
ENV_TOTAL_TIMED_EXTENSION = "THERACHARGE_TOTAL_TIMED_EXTENSION_URL"
DEFAULT_EXTENSION_BASE = "https://theracharge.example/fhir"
CATALOG_FILE = "catalog.yaml"
UNIT_RULES_FILE = "rules/units.yaml"
FINDINGS_FILE = "rules/findings.yaml"
PAYERS_FILE = "payers.yaml"
ROLES_FILE = "roles.yaml"
MAPPINGS_DIR = "mappings"
EPISODE_FILE = "rules/episode.yaml"
FEES_FILE = "fees.yaml"
VOCABULARY_FILE = "rules/activities.yaml"
PRACTITIONERS_FILE = "practitioners.yaml"
OUTLET_FILE = "outlet.yaml"
PTP_FILE = "ncci/ptp_practitioner.csv"
MUE_FILE = "ncci/mue_practitioner.csv"


def default_config_dir() -> Path:
    """The shipped defaults: inside the installed package, or config/ of a source checkout."""
    package = Path(__file__).resolve().parent.parent  # plugin/
    packaged = package / "_config"
    if packaged.is_dir():
        return packaged
    return package.parent / "config"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads at start, validated once."""

    config_dir: Path | None
    catalog: Catalog
    unit_parameters: UnitParameters
    payers: PayerTable
    coding_tables: CodingTables
    code_map: CodeMap
    findings: FindingPolicy  # finding kinds, default severities, payers' overrides
    ncci: NcciTables  # the CMS PTP pairs and MUEs (config/ncci/)
    episode: EpisodeRules  # plan of care, progress reports, KX (config/rules/episode.yaml)
    fees: FeeSchedule  # allowed amounts per code (config/fees.yaml, or the stored version)
    # what notes say was done: activities by code, negation, skill, measures (activities.yaml)
    vocabulary: Vocabulary
    # the site's practitioners whose role the EHR does not say (config/practitioners.yaml)
    practitioners: PractitionerTable
    extension_base: str  # base URL of our extensions, identifier and code systems
    minutes_extension: str  # the Procedure extension read first for billable minutes
    total_timed_extension: str  # the Encounter extension with the documented total timed minutes
    sources: Mapping[str, Path]  # which file each table came from
    code_map_files: tuple[str, ...] = ()  # the mapping files merged into code_map
    # The version of every table in force, by table ("catalog", "payers", "mapping/x.json"):
    # a managed table's stored version ("v3"), a file's content digest ("sha256-…"). Named in
    # each write's Provenance and in every run's output.
    versions: Mapping[str, str] = field(default_factory=dict)
    fhir: FhirConnection = field(default_factory=FhirConnection)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    # the charge outlet's site settings (config/outlet.yaml) and where it is (THERACHARGE_OUTLET)
    outlet_site: OutletSite = field(default_factory=OutletSite)
    outlet: OutletConnection = field(default_factory=OutletConnection)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every table; a site directory overrides the shipped files one by one."""
    env = os.environ if environ is None else environ
    site = _site_dir(env)
    paths = {
        "catalog": _locate(CATALOG_FILE, site),
        "unit_rules": _locate(UNIT_RULES_FILE, site),
        "payers": _locate(PAYERS_FILE, site),
        "roles": _locate(ROLES_FILE, site),
        "findings": _locate(FINDINGS_FILE, site),
        "ncci_ptp": _locate(PTP_FILE, site),
        "ncci_mue": _locate(MUE_FILE, site),
        "episode": _locate(EPISODE_FILE, site),
        "fees": _locate(FEES_FILE, site),
        "vocabulary": _locate(VOCABULARY_FILE, site),
        "practitioners": _locate(PRACTITIONERS_FILE, site),
        "outlet": _locate(OUTLET_FILE, site),
    }
    catalog: Catalog = load_table(paths["catalog"], CatalogSchema())
    mapping_paths = mapping_files(site)
    base = url_setting(env, ENV_EXTENSION_BASE, DEFAULT_EXTENSION_BASE).rstrip("/")
    minutes_default = f"{base}/StructureDefinition/billable-minutes"
    total_default = f"{base}/StructureDefinition/total-timed-minutes"
    payers: PayerTable = load_table(paths["payers"], PayerTableSchema())
    service = service_config(env)
    outlet = outlet_connection(env, service)
    findings = with_payer_overrides(
        load_table(paths["findings"], FindingRegistrySchema()), payers, paths["payers"]
    )
    outlet_site: OutletSite = load_table(paths["outlet"], OutletSiteSchema())
    missing = outlet_site.missing(outlet.kind)
    if missing:
        raise ConfigError(
            f"{paths['outlet']}: {', '.join(missing)}: needed with THERACHARGE_OUTLET={outlet.kind}"
        )
    return Settings(
        config_dir=site,
        catalog=catalog,
        unit_parameters=load_table(paths["unit_rules"], UnitRulesSchema()),
        ncci=load_ncci(paths["ncci_ptp"], paths["ncci_mue"]),
        episode=load_table(paths["episode"], EpisodeRulesSchema()),
        fees=load_table(paths["fees"], FeeScheduleSchema()),
        vocabulary=load_table(paths["vocabulary"], VocabularySchema()),
        payers=payers,
        findings=findings,
        coding_tables=load_table(paths["roles"], CodingTablesSchema()),
        practitioners=load_table(paths["practitioners"], PractitionerTableSchema()),
        code_map=load_code_map(mapping_paths, catalog),
        extension_base=base,
        minutes_extension=url_setting(env, ENV_MINUTES_EXTENSION, minutes_default),
        total_timed_extension=url_setting(env, ENV_TOTAL_TIMED_EXTENSION, total_default),
        sources=paths,
        code_map_files=tuple(p.name for p in mapping_paths),
        versions={
            **{name.replace("_", "-"): file_version(path) for name, path in paths.items()},
            **{f"{MAPPINGS_DIR}/{p.name}": file_version(p) for p in mapping_paths},
        },
        fhir=fhir_connection(env),
        service=service,
        outlet_site=outlet_site,
        outlet=outlet,
    )


def file_version(path: Path) -> str:
    """A configuration file's version: the first 12 hex digits of its SHA-256."""
    return "sha256-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def unknown_finding_codes(payers: PayerTable, policy: FindingPolicy) -> list[str]:
    """Payers' severity overrides naming a finding kind that does not exist, by field."""
    return [
        f"payers[{index}].gap_severity.{code}: unknown finding code"
        for index, payer in enumerate(payers.payers)
        for code in payer.gap_severity
        if code not in policy.types
    ]


def with_payer_overrides(policy: FindingPolicy, payers: PayerTable, path: Path) -> FindingPolicy:
    """Payers' severity overrides, checked against the finding kinds that exist."""
    problems = unknown_finding_codes(payers, policy)
    if problems:
        raise ConfigError(f"{path}: {'; '.join(problems)}")
    overrides = {p.id: dict(p.gap_severity) for p in payers.payers if p.gap_severity}
    return dataclasses.replace(policy, payer_overrides=overrides)


PTP_COLUMNS = ("column1", "column2", "effective", "deletion", "modifier_indicator")
MUE_COLUMNS = ("code", "mue", "mai", "effective")


def load_ncci(ptp_path: Path, mue_path: Path) -> NcciTables:
    """The CMS PTP and MUE tables from files; an error names the file, the line and the
    column."""
    return ncci_from_rows(csv_rows(ptp_path, PTP_COLUMNS), csv_rows(mue_path, MUE_COLUMNS))


def ncci_from_rows(ptp_rows: list[_Row], mue_rows: list[_Row]) -> NcciTables:
    """The tables from rows of config/ncci/'s columns (a file's, or a stored import's)."""
    ptp = [
        PtpEdit(
            _code(row, "column1"),
            _code(row, "column2"),
            _day(row, "effective"),
            None if row["deletion"].strip() in ("", "*") else _day(row, "deletion"),
            _number(row, "modifier_indicator", (0, 1, 9)),
        )
        for row in ptp_rows
    ]
    mue = [
        Mue(
            _code(row, "code"),
            _number(row, "mue"),
            _number(row, "mai", (1, 2, 3)),
            _day(row, "effective"),
        )
        for row in mue_rows
    ]
    return NcciTables.of(ptp, mue)


def stored_rows(rows: object, columns: tuple[str, ...], where: str) -> list[_Row]:
    """Rows kept in the database (a list of objects) as rows to validate; names each one."""
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: expected a list of rows")
    found = []
    for index, raw in enumerate(rows):
        if not isinstance(raw, dict) or any(not isinstance(raw.get(c), str) for c in columns):
            raise ConfigError(f"{where}[{index}]: expected the columns {', '.join(columns)}")
        row = _Row({k: v for k, v in raw.items() if isinstance(v, str)})
        row.where = f"{where}[{index}]"
        found.append(row)
    return found


class _Row(dict[str, str]):
    where: str = ""


def csv_rows(path: Path, columns: tuple[str, ...]) -> list[_Row]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or ())]
            if missing:
                raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
            rows = []
            for number, raw in enumerate(reader, start=2):
                row = _Row({k: (v or "") for k, v in raw.items() if k})
                row.where = f"{path}: line {number}"
                rows.append(row)
            return rows
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc


def _code(row: _Row, column: str) -> str:
    value = row[column].strip()
    if not value.isalnum() or len(value) != 5:
        raise ConfigError(f"{row.where}: {column}: {value!r} is not a CPT/HCPCS code")
    return value


def _day(row: _Row, column: str) -> date | None:
    value = row[column].strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{row.where}: {column}: {value!r} is not a date") from exc


def _number(row: _Row, column: str, allowed: tuple[int, ...] | None = None) -> int:
    value = row[column].strip()
    if not value.isdigit() or (allowed and int(value) not in allowed):
        expected = f"one of {', '.join(map(str, allowed))}" if allowed else "a whole number"
        raise ConfigError(f"{row.where}: {column}: {value!r} is not {expected}")
    return int(value)


def load_code_map(paths: list[Path], catalog: Catalog) -> CodeMap:
    """Validate every ConceptMap file and merge them; errors name the file and the element."""
    maps = []
    for path in paths:
        try:
            raw = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        try:
            maps.append((path.name, load_concept_map(raw, catalog)))
        except ValidationError as exc:
            raise ConfigError(f"{path}: {describe(field_errors(exc.messages))}") from exc
    try:
        return merge_concept_maps(maps)
    except ValidationError as exc:
        raise ConfigError(f"{MAPPINGS_DIR}: {describe(field_errors(exc.messages))}") from exc


def mapping_files(site: Path | None) -> list[Path]:
    """Shipped mapping files, each replaced by a site file of the same name; site extras added."""
    files = {p.name: p for p in sorted((default_config_dir() / MAPPINGS_DIR).glob("*.json"))}
    if site is not None and (site / MAPPINGS_DIR).is_dir():
        files.update({p.name: p for p in sorted((site / MAPPINGS_DIR).glob("*.json"))})
    return [files[name] for name in sorted(files)]


# libyaml's safe loader where PyYAML was built with it (about 10× faster at start), else
# PyYAML's own: the same documents load to the same values.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_table(path: Path, schema: Schema) -> Any:
    """Load one YAML table through its schema; errors name the file and every bad field."""
    try:
        with path.open(encoding="utf-8") as handle:
            raw = yaml.load(handle, Loader=SAFE_LOADER)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return schema.load(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe(field_errors(exc.messages))}") from exc


def _site_dir(env: Mapping[str, str]) -> Path | None:
    value = env.get(ENV_CONFIG_DIR, "").strip()
    if not value:
        return None
    path = Path(value)
    if not path.is_dir():
        raise ConfigError(f"{ENV_CONFIG_DIR}: {value} is not a directory")
    return path


def _locate(name: str, site: Path | None) -> Path:
    if site is not None and (site / name).is_file():
        return site / name
    return default_config_dir() / name
