"""Settings: the shipped config/ tables, a site's own config directory, THERACHARGE_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from marshmallow import Schema, ValidationError

from plugin.rules.model import Catalog
from plugin.rules.parameters import UnitParameters
from plugin.schemas.catalog import CatalogSchema
from plugin.schemas.errors import ConfigError, flatten_errors
from plugin.schemas.unit_rules import UnitRulesSchema

ENV_CONFIG_DIR = "THERACHARGE_CONFIG_DIR"
CATALOG_FILE = "catalog.yaml"
UNIT_RULES_FILE = "rules/units.yaml"


def default_config_dir() -> Path:
    """The shipped defaults: inside the installed package, or config/ of a source checkout."""
    packaged = Path(__file__).resolve().parent / "_config"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "config"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads at start, validated once."""

    config_dir: Path | None
    catalog: Catalog
    unit_parameters: UnitParameters
    sources: Mapping[str, Path]  # which file each table came from


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every table; a site directory overrides the shipped files one by one."""
    env = os.environ if environ is None else environ
    site = _site_dir(env)
    catalog_path = _locate(CATALOG_FILE, site)
    rules_path = _locate(UNIT_RULES_FILE, site)
    catalog: Catalog = load_table(catalog_path, CatalogSchema())
    parameters: UnitParameters = load_table(rules_path, UnitRulesSchema())
    return Settings(
        config_dir=site,
        catalog=catalog,
        unit_parameters=parameters,
        sources={"catalog": catalog_path, "unit_rules": rules_path},
    )


def load_table(path: Path, schema: Schema) -> Any:
    """Load one YAML table through its schema; errors name the file and every bad field."""
    try:
        with path.open(encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return schema.load(raw)
    except ValidationError as exc:
        problems = "; ".join(flatten_errors(exc.messages))
        raise ConfigError(f"{path}: {problems}") from exc


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
