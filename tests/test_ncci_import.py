"""CMS's quarterly NCCI files imported as new, audited versions that every decision then uses."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from plugin.commands import main as cli
from plugin.config.effective import effective_settings
from plugin.config.files import load_settings
from plugin.config.ncci_import import mue_rows, ptp_rows
from plugin.config.tokens import token_hash
from plugin.store import Store

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "ncci"
COPYRIGHT = (
    "CPT codes, descriptions and other data only are copyright American Medical Association."
)


def shipped(name: str) -> list[dict[str, str]]:
    with (SHIPPED / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def cms_ptp(rows: list[dict[str, str]]) -> str:
    """The rows in CMS's practitioner PTP text layout: copyright and header lines, tabs,
    YYYYMMDD dates, "*" for no deletion date, and a non-therapy pair to leave out."""
    lines = [
        COPYRIGHT,
        "Column 1\tColumn 2\t*=in existence prior to 1996\tEffective\tDeletion\tModifier\t"
        "PTP Edit Rationale",
        "\t\t\tDate\tDate\t0=not allowed",
        "\t\t\t\t*=no data\t1=allowed",
        "0001U\t0002U\t\t20240101\t*\t1\tMisuse of column two code with column one code",
    ]
    for row in rows:
        effective = row["effective"].replace("-", "")
        deletion = row["deletion"].replace("-", "")
        lines.append(
            f"{row['column1']}\t{row['column2']}\t\t{effective}\t{deletion}\t"
            f"{row['modifier_indicator']}\tStandards of medical / surgical practice"
        )
    return "\n".join(lines) + "\n"


def cms_mue(values: dict[str, tuple[int, str]]) -> str:
    lines = [
        f'"{COPYRIGHT}"',
        '"HCPCS/CPT Code","Practitioner Services MUE Values","MUE Adjudication Indicator",'
        '"MUE Rationale"',
        '"0001U","1","2 Date of Service Edit: Policy","Code Descriptor / CPT Instruction"',
    ]
    lines += [f'"{code}","{mue}","{mai}","Clinical: Data"' for code, (mue, mai) in values.items()]
    return "\n".join(lines) + "\n"


def test_a_cms_format_ptp_file_imports_to_the_shipped_rows(settings: Any) -> None:
    rows = shipped("ptp_practitioner.csv")
    codes = set(settings.catalog.codes)
    imported = ptp_rows(cms_ptp(rows), codes, "ccipra-v323r0-f1.txt")
    columns = ("column1", "column2", "effective", "deletion", "modifier_indicator")
    ours = [r for r in rows if r["column1"] in codes and r["column2"] in codes]
    assert len(ours) > 300  # the pairs among the catalog's codes (wound care and others left out)
    assert [tuple(r[c] for c in columns) for r in imported] == [
        tuple(r[c] for c in columns) for r in ours
    ]


def test_a_cms_format_mue_file_takes_its_date_from_its_name(settings: Any) -> None:
    text = cms_mue({"97110": (6, "3 Date of Service Edit: Clinical"), "97010": (0, "2 x")})
    rows = mue_rows(
        text, set(settings.catalog.codes), "MCR_MUE_PractitionerServices_Eff_01-01-2027.csv"
    )
    assert [(r["code"], r["mue"], r["mai"], r["effective"]) for r in rows] == [
        ("97110", "6", "3", "2027-01-01"),
        ("97010", "0", "2", "2027-01-01"),
    ]


def test_the_cli_imports_a_quarter_that_later_decisions_use(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("THERACHARGE_DATABASE_URL", f"sqlite:///{tmp_path / 'tc.db'}")
    path = tmp_path / "MCR_MUE_PractitionerServices_Eff_01-01-2027.csv"
    path.write_text(cms_mue({"97112": (2, "3 Date of Service Edit: Clinical")}))
    code = cli.main(["import", "ncci-mue", str(path), "--reason", "2027 Q1 MUEs"])
    assert code == 0, capsys.readouterr().err
    assert "ncci/mue version 1" in capsys.readouterr().out
    settings = effective_settings(load_settings())
    assert settings.versions["ncci-mue"] == "v1"
    assert settings.ncci.mue_of("97112", date(2027, 1, 5)).units == 2  # type: ignore[union-attr]
    # an earlier date of service keeps the values of its own date
    assert settings.ncci.mue_of("97112", date(2026, 11, 2)).units == 4  # type: ignore[union-attr]
    (entry,) = Store(settings.service.database_url).audit_entries(object_type="ncci")
    assert (entry.action, entry.object_id, entry.detail["rows"] > 0) == ("import", "mue", True)


def test_a_file_that_is_not_the_cms_layout_is_refused_and_nothing_stored(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("THERACHARGE_DATABASE_URL", f"sqlite:///{tmp_path / 'tc.db'}")
    path = tmp_path / "ccipra.txt"
    path.write_text("this is not a PTP file\n")
    code = cli.main(["import", "ncci-ptp", str(path), "--reason", "oops"])
    assert code == 2
    assert "ccipra.txt: no PTP rows" in capsys.readouterr().err
    assert Store(f"sqlite:///{tmp_path / 'tc.db'}").config_tables("ncci") == []


@pytest.fixture
def admin_app(make_app: Any) -> Any:
    return make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('admin-token')}")


def test_the_admin_api_imports_a_ptp_file_and_the_hook_applies_it(admin_app: Any) -> None:
    client = admin_app.test_client()
    headers = {"Authorization": "Bearer admin-token", "Content-Type": "text/plain"}
    rows = [
        {
            "column1": "97110",
            "column2": "97112",
            "effective": "2026-10-01",
            "deletion": "*",
            "modifier_indicator": "0",
        }
    ]
    answer = client.put(
        "/admin/api/v1/ncci/ptp?reason=test+pair&filename=ccipra-v999r0-f1.txt",
        data=cms_ptp(rows),
        headers=headers,
    )
    assert answer.status_code == 200, answer.json
    assert (answer.json["version"], answer.json["rows"]) == (1, 1)
    state = admin_app.extensions["theracharge"]
    assert state.settings.versions["ncci-ptp"] == "v1"
    edit = state.settings.ncci.pair("97110", "97112", date(2026, 11, 2))
    assert edit is not None
    assert edit.indicator == 0
    assert state.settings.ncci.pair("97140", "97124", date(2026, 11, 2)) is None  # replaced
    versions = client.get("/admin/api/v1/ncci/ptp/versions", headers=headers).json
    assert [(v["version"], v["reason"]) for v in versions] == [(1, "test pair")]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/api/v1/ncci/ptp?filename=x.txt", 400),  # no reason: a required parameter
        ("/admin/api/v1/ncci/nope?reason=x", 404),
        ("/admin/api/v1/ncci/mue?reason=x&filename=mue.csv", 422),  # no effective date
        ("/admin/api/v1/ncci/mue?reason=x&effective=soon", 400),
    ],
)
def test_bad_imports_are_refused_with_the_reason(admin_app: Any, path: str, status: int) -> None:
    headers = {"Authorization": "Bearer admin-token", "Content-Type": "text/plain"}
    answer = admin_app.test_client().put(path, data=cms_mue({"97110": (6, "3 x")}), headers=headers)
    assert answer.status_code == status, answer.json
    assert answer.json["message"]


def test_every_part_of_a_quarter_imports_at_once(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    """CMS splits the PTP table into parts by column-one code: an import takes them all."""
    monkeypatch.setenv("THERACHARGE_DATABASE_URL", f"sqlite:///{tmp_path / 'tc.db'}")
    rows = shipped("ptp_practitioner.csv")
    first, second = tmp_path / "ccipra-v323r0-f1.txt", tmp_path / "ccipra-v323r0-f4.txt"
    first.write_text(cms_ptp([r for r in rows if r["column1"] < "97150"]))
    second.write_text(cms_ptp([r for r in rows if r["column1"] >= "97150"]))
    assert cli.main(["import", "ncci-ptp", str(first), str(second), "--reason", "Q4"]) == 0
    assert "from ccipra-v323r0-f1.txt + ccipra-v323r0-f4.txt" in capsys.readouterr().out
    tables = effective_settings(load_settings()).ncci
    on = date(2026, 11, 2)
    assert tables.pair("97140", "97124", on).indicator == 0  # type: ignore[union-attr]
    assert tables.pair("97530", "97537", on).indicator == 1  # type: ignore[union-attr]


def test_an_mue_file_that_is_not_csv_is_refused_by_name(settings: Any) -> None:
    from plugin.config.ncci_import import NcciFileError

    with pytest.raises(NcciFileError, match="not readable as CSV"):
        mue_rows("97110,4\r0", settings.catalog.codes, "x.csv", date(2026, 4, 1))
