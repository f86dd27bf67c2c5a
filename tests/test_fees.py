"""The fee schedule: shipped, replaced through the admin API, imported from a CSV; each version
prices the lines decided after it (ChargeItem.priceOverride)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plugin.commands import main as cli
from plugin.config.effective import effective_settings
from plugin.config.files import load_settings
from plugin.config.tokens import token_hash
from plugin.pipeline.billing_day import decide_gathered
from plugin.store import Store
from tests import builders

HEADERS = {"Authorization": "Bearer admin-token"}


def test_the_shipped_schedule_prices_a_line_at_units_times_its_amount(settings: Any) -> None:
    assert settings.fees.amount("97110", date(2026, 11, 2)) == Decimal("29.00")
    assert settings.fees.amount("97110", date(2025, 12, 31)) is None  # not yet in force
    record = builders.complete_record(builders.procedure("p1", "97110", minutes=30))
    (line,) = decide_gathered(settings, record, "e1").lines
    assert (line.units, line.price, line.currency) == (2, Decimal("58.00"), "USD")


def test_the_cli_imports_a_csv_that_prices_later_decisions(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("THERACHARGE_DATABASE_URL", f"sqlite:///{tmp_path / 'tc.db'}")
    path = tmp_path / "locality-01.csv"
    path.write_text(
        "HCPCS,MOD,NON-FACILITY PRICE\n97110,,$31.25\n97110,26,$1.00\n99999,,5.00\n97140,,28.10\n"
    )
    code = cli.main(
        [
            "import", "fee-schedule", str(path), "--effective", "2027-01-01",
            "--reason", "2027 locality amounts", "--source", "MAC locality 01, CY 2027",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "fees version 1: 2 codes" in capsys.readouterr().out
    settings = effective_settings(load_settings())
    assert settings.versions["fees"] == "v1"
    assert settings.fees.amount("97110", date(2027, 1, 4)) == Decimal("31.25")  # no modifier row
    assert settings.fees.amount("97110", date(2026, 11, 2)) == Decimal("29.00")  # kept before
    (entry,) = Store(settings.service.database_url).audit_entries(object_type="fees")
    assert entry.action == "save"


def test_a_csv_without_an_amount_column_exits_2_and_stores_nothing(
    tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("THERACHARGE_DATABASE_URL", f"sqlite:///{tmp_path / 'tc.db'}")
    path = tmp_path / "fees.csv"
    path.write_text("code,price each\n97110,30\n")
    args = ["import", "fee-schedule", str(path), "--effective", "2027-01-01", "--reason", "x"]
    assert cli.main(args) == 2
    assert "fees.csv: needs a code column" in capsys.readouterr().err
    assert Store(f"sqlite:///{tmp_path / 'tc.db'}").config_tables("fees") == []


@pytest.fixture
def admin_app(make_app: Any) -> Any:
    return make_app(THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('admin-token')}")


def test_the_admin_api_replaces_the_schedule_and_rolls_it_back(admin_app: Any) -> None:
    client = admin_app.test_client()
    shipped = client.get("/admin/api/v1/fees", headers=HEADERS).json
    assert shipped["schedules"][0]["amounts"]["97110"] == 29.0
    changed = {
        "currency": "USD",
        "schedules": [{"effective": "2026-01-01", "source": "contract", "amounts": {"97110": 40}}],
    }
    answer = client.put(
        "/admin/api/v1/fees", json={"reason": "new contract", "fees": changed}, headers=HEADERS
    )
    assert answer.status_code == 200, answer.json
    state = admin_app.extensions["theracharge"]
    assert state.settings.fees.amount("97110", date(2026, 11, 2)) == Decimal("40")
    assert state.settings.fees.amount("97140", date(2026, 11, 2)) is None
    changed["schedules"][0]["amounts"] = {"97110": 50}
    again = client.put(
        "/admin/api/v1/fees", json={"reason": "renegotiated", "fees": changed}, headers=HEADERS
    )
    assert again.json["version"] == 2
    assert state.settings.fees.amount("97110", date(2026, 11, 2)) == Decimal("50")
    versions = client.get("/admin/api/v1/fees/versions", headers=HEADERS).json
    latest = max(versions, key=lambda v: v["version"])
    assert (latest["version"], latest["reason"]) == (2, "renegotiated")
    assert latest["diff"] == [
        {
            "change": "changed",
            "effective": "2026-01-01",
            "code": "97110",
            "before": "40",
            "after": "50",
        }
    ]
    back = client.post(
        "/admin/api/v1/fees/rollback", json={"version": 1, "reason": "undo"}, headers=HEADERS
    )
    assert back.status_code == 200, back.json
    assert back.json["version"] == 3
    assert state.settings.fees.amount("97110", date(2026, 11, 2)) == Decimal("40")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x"}, "fees"),
        ({"reason": "", "fees": {"schedules": []}}, "reason"),
        (
            {
                "reason": "x",
                "fees": {
                    "schedules": [
                        {"effective": "2026-01-01", "source": "s", "amounts": {"9711": 1}}
                    ]
                },
            },
            "fees.schedules[0].amounts",
        ),
        (
            {
                "reason": "x",
                "fees": {
                    "schedules": [
                        {"effective": "2026-01-01", "source": "s", "amounts": {"97110": -1}}
                    ]
                },
            },
            "fees.schedules[0].amounts",
        ),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(
    admin_app: Any, body: dict[str, Any], field: str
) -> None:
    answer = admin_app.test_client().put("/admin/api/v1/fees", json=body, headers=HEADERS)
    assert answer.status_code == 422, answer.json
    assert any(name.startswith(field) for name in answer.json["fields"]), answer.json
    assert admin_app.extensions["theracharge"].store.config_tables("fees") == []


def test_the_admin_api_imports_a_csv(admin_app: Any) -> None:
    answer = admin_app.test_client().put(
        "/admin/api/v1/fees/import?effective=2027-01-01&reason=2027&filename=pfs.csv",
        data="code,amount\n97530,37.00\n",
        headers={**HEADERS, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["codes"] == 1
    fees = admin_app.extensions["theracharge"].settings.fees
    assert fees.amount("97530", date(2027, 2, 1)) == Decimal("37.00")


def test_a_csv_that_cannot_be_read_is_refused_by_name(admin_app: Any) -> None:
    # a carriage return alone inside a field is not CSV (found by tests/reliability/test_hostile)
    answer = admin_app.test_client().put(
        "/admin/api/v1/fees/import?effective=2027-01-01&reason=2027&filename=pfs.csv",
        data="\r0",
        headers={**HEADERS, "Content-Type": "text/csv"},
    )
    assert answer.status_code == 422, answer.json
    assert "pfs.csv: not readable as CSV" in answer.json["message"]
    assert admin_app.extensions["theracharge"].store.config_tables("fees") == []
