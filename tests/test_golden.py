"""Whole outputs of representative visits against golden files (regenerated only on purpose)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from plugin.config.files import Settings
from plugin.pipeline.files import OfflineOutputs, process_file

FIXTURES = Path(__file__).parent / "fixtures" / "visits"
GOLDEN = Path(__file__).parent / "golden"
FROZEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
CASES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def _outputs(name: str, settings: Settings) -> dict[str, object]:
    bundle, report = io.BytesIO(), io.BytesIO()
    process_file(str(FIXTURES / f"{name}.json"), settings, OfflineOutputs(bundle, report), FROZEN)
    return {"bundle": orjson.loads(bundle.getvalue()), "report": orjson.loads(report.getvalue())}


@pytest.mark.parametrize("name", CASES)
def test_outputs_match_the_golden_files(
    name: str, settings: Settings, request: pytest.FixtureRequest
) -> None:
    got = _outputs(name, settings)
    for part, value in got.items():
        path = GOLDEN / f"{name}.{part}.json"
        rendered = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        if request.config.getoption("--regen-golden"):
            path.write_bytes(rendered)
        assert path.exists(), f"{path} missing: run pytest --regen-golden once, then review it"
        assert orjson.loads(path.read_bytes()) == value, f"{name} {part} differs from {path}"


def test_the_golden_units_are_the_ones_checked_by_hand(settings: Settings) -> None:
    """The README of the fixtures states the units; the golden files must say the same."""
    expected = {
        "medicare-cms-example-3": {
            ("97110", 2, "billable"),
            ("97140", 1, "billable"),
            ("97161", 1, "billable"),
        },
        "commercial-ama": {("97110", 2, "billable"), ("97140", 0, "not-billable")},
        "held-for-time": {("97112", 0, "planned"), ("97110", 1, "planned")},
        "slp-cognitive": {
            ("97129", 1, "billable"),
            ("97130", 2, "billable"),
            ("92507", 1, "billable"),
        },
    }
    for name, lines in expected.items():
        report = orjson.loads((GOLDEN / f"{name}.report.json").read_bytes())
        (encounter,) = report["encounters"]
        assert {(ln["code"], ln["units"], ln["status"]) for ln in encounter["lines"]} == lines, name
