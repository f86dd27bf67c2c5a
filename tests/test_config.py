"""Every shipped config table loads, and the schemas reject broken tables by name."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from plugin.config.files import Settings, default_config_dir, load_settings, load_table
from plugin.rules.model import CodeKind, Discipline, TieBreak
from plugin.rules.units import units_for_minutes
from plugin.schemas.catalog import CatalogSchema
from plugin.schemas.errors import ConfigError

REQUIRED_CODES = (
    [f"970{n}" for n in (32, 33, 34, 35, 36, 39)]
    + ["97110", "97112", "97113", "97116", "97124", "97140", "97530", "97533", "97535"]
    + ["97537", "97542", "97750", "97755", "97760", "97761", "97763", "97129", "97130"]
    + ["97010", "97012", "97014", "97016", "97018", "97022", "97024", "97026", "97028"]
    + ["G0283", "97150"]
    + [f"9716{n}" for n in range(1, 9)]
    + ["92507", "92508", "92521", "92522", "92523", "92524", "92526", "92610"]
)
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"


def test_every_shipped_config_file_is_loaded_through_its_schema(settings: Settings) -> None:
    root = default_config_dir()
    shipped = {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".md"
    }  # README: for people
    loaded = {str(p.relative_to(root)) for p in settings.sources.values()}
    mappings = {f"mappings/{name}" for name in settings.code_map_files}
    assert shipped == loaded | mappings
    assert len(settings.catalog.codes) >= len(REQUIRED_CODES)
    assert len(settings.code_map.entries) >= 30
    assert len(settings.payers.payers) >= 3


def test_the_catalog_has_every_code_the_reference_names(settings: Settings) -> None:
    missing = [c for c in REQUIRED_CODES if c not in settings.catalog]
    assert missing == []


def test_catalog_systems_kinds_and_disciplines(settings: Settings) -> None:
    catalog = settings.catalog
    assert catalog["97110"].system == CPT
    assert catalog["G0283"].system == HCPCS
    assert catalog["97110"].kind is CodeKind.TIMED_15
    assert catalog["97161"].kind is CodeKind.UNTIMED
    assert catalog["97161"].disciplines == (Discipline.PT,)
    assert catalog["97165"].disciplines == (Discipline.OT,)
    assert catalog["92507"].disciplines == (Discipline.SLP,)
    assert catalog["97130"].kind is CodeKind.ADDON
    assert catalog["97130"].primary == "97129"
    assert catalog["97550"].first_minutes == 30
    assert catalog["97550"].addon == "97551"
    assert all(d.source for d in catalog)


def test_the_unit_parameters_reproduce_every_row_cms_prints(settings: Settings) -> None:
    dated = settings.unit_parameters.unit_table.at(date(2026, 11, 27))
    table = dated.value
    assert "§20.2 C" in dated.reference.title
    assert len(table.published_rows) == 8
    for units, low, high in table.published_rows:
        assert units_for_minutes(low, table) == units
        assert units_for_minutes(high, table) == units
        assert units_for_minutes(low - 1, table) == units - 1
    assert settings.unit_parameters.tie_break == (TieBreak.MOST_MINUTES, TieBreak.INPUT_ORDER)


def test_a_date_before_any_dated_value_is_refused(settings: Settings) -> None:
    with pytest.raises(LookupError, match="unit_table"):
        settings.unit_parameters.unit_table.at(date(1990, 1, 1))


def _catalog_with(tmp_path: Path, codes: list[dict[str, object]]) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"systems": {"cpt": CPT}, "codes": codes}))
    return path


GOOD = {
    "code": "97110",
    "system": "cpt",
    "label": "Exercise",
    "kind": "timed-15",
    "disciplines": ["PT"],
    "source": "CPT descriptor: each 15 minutes",
}


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ([GOOD, GOOD], "codes[1].code: duplicate code 97110 (first at codes[0])"),
        ([{**GOOD, "kind": "timed-16"}], "codes[0].kind: Must be one of"),
        ([{**GOOD, "system": "icd"}], "codes[0].system: unknown system 'icd'"),
        ([{**GOOD, "colour": "red"}], "codes[0].colour: Unknown field."),
        ([{**GOOD, "disciplines": []}], "codes[0].disciplines: Shorter than minimum length 1."),
        ([{**GOOD, "source": ""}], "codes[0].source"),
        ([{**GOOD, "addon": "97130"}], "codes[0].addon: add-on 97130 must be in the catalog"),
        ([{**GOOD, "kind": "addon"}], "codes[0].primary: an addon code names its primary"),
        ([{**GOOD, "code": "9711"}], "codes[0].code: String does not match"),
    ],
)
def test_a_broken_catalog_is_refused_naming_the_entry(tmp_path: Path, codes, message) -> None:
    with pytest.raises(ConfigError) as error:
        load_table(_catalog_with(tmp_path, codes), CatalogSchema())
    assert message in str(error.value)
    assert "catalog.yaml" in str(error.value)


def test_a_site_config_dir_overrides_the_shipped_files_one_by_one(tmp_path: Path) -> None:
    (tmp_path / "payers.yaml").write_text(
        "default_method: ama\ndefault_source: site default\npayers: []\n"
    )
    settings = load_settings({"THERACHARGE_CONFIG_DIR": str(tmp_path)})
    assert settings.payers.default_method.value == "ama"
    assert settings.payers.payers == ()
    assert settings.sources["payers"] == tmp_path / "payers.yaml"
    assert settings.sources["catalog"] == default_config_dir() / "catalog.yaml"


def test_a_site_catalog_that_drops_mapped_codes_names_the_mapping_file(tmp_path: Path) -> None:
    _catalog_with(tmp_path, [GOOD])
    with pytest.raises(ConfigError) as error:
        load_settings({"THERACHARGE_CONFIG_DIR": str(tmp_path)})
    assert "local-example-ehr.json" in str(error.value)
    assert "is not in the code catalog" in str(error.value)


def test_a_config_dir_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="THERACHARGE_CONFIG_DIR"):
        load_settings({"THERACHARGE_CONFIG_DIR": str(tmp_path / "nowhere")})


def test_yaml_that_is_not_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("codes: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_table(path, CatalogSchema())
