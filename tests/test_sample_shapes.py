"""The sample written the US Core way (`theracharge sample --shape us-core`: roles in
PractitionerRole.specialty/code, certification as a signed plan DocumentReference with a
Provenance) decides exactly as the sample written today's way: every line, every finding."""

from __future__ import annotations

import io
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugin.commands import main as cli
from plugin.config.files import Settings
from plugin.pipeline.files import OfflineOutputs, process_file
from plugin.rules.systems import NUCC
from plugin.sample import SampleSpec, as_transaction, generate, us_core
from plugin.sample.vocabulary import CERTIFIED_URL

FROZEN = datetime(2026, 11, 2, 18, 0, tzinfo=timezone(timedelta(hours=-5)))
SPEC = SampleSpec(visits=240, seed=7, problem_rate=0.35, days=4, second_visits=0.2)


def _decided(path: Path, resources: list[dict[str, Any]], settings: Settings) -> dict[str, Any]:
    path.write_bytes(orjson.dumps(as_transaction(resources)))
    report = io.BytesIO()
    process_file(str(path), settings, OfflineOutputs(report=report), FROZEN)
    return {e["encounter"]: e for e in orjson.loads(report.getvalue())["encounters"]}


def _lines(entry: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (ln["code"], ln["units"], tuple(ln["modifiers"]), ln["status"], ln.get("price"))
        for ln in entry["lines"]
    )


def _gaps(entry: dict[str, Any]) -> list[str]:
    return sorted(p["code"] for p in entry["problems"] if p["severity"] != "info")


def test_the_us_core_shape_decides_every_line_as_todays_shape(
    tmp_path: Path, settings: Settings
) -> None:
    today = list(generate(SPEC))
    written = list(us_core(generate(SPEC)))
    # what makes it US Core: no taxonomy on the procedures, no certification extension
    functions = [
        c
        for r in written
        if r["resourceType"] == "Procedure"
        for p in r.get("performer") or ()
        for c in (p.get("function") or {}).get("coding") or ()
    ]
    assert not [c for c in functions if c["system"] == NUCC]
    assert not any(
        e.get("url") == CERTIFIED_URL
        for r in written
        if r["resourceType"] == "CarePlan"
        for e in r.get("extension") or ()
    )
    kinds = Counter(r["resourceType"] for r in written)
    assert kinds["DocumentReference"] == kinds["CarePlan"] == kinds["Provenance"] > 0
    a = _decided(tmp_path / "today.json", today, settings)
    b = _decided(tmp_path / "us-core.json", written, settings)
    assert a.keys() == b.keys()
    for encounter, entry in a.items():
        assert _lines(b[encounter]) == _lines(entry), encounter
        assert _gaps(b[encounter]) == _gaps(entry), encounter
    modifiers = Counter(m for e in b.values() for ln in e["lines"] for m in ln["modifiers"])
    assert modifiers["CQ"] > 0
    assert modifiers["CO"] > 0  # assistants' services carry CQ/CO, never bare
    said = " ".join(x["text"] for e in b.values() for x in e["explanation"])
    assert "specialty" in said
    assert "DocumentReference/plan-doc-" in said


def test_the_sample_command_writes_the_us_core_shape(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "visits.ndjson"
    argv = ["sample", "--visits", "3", "--shape", "us-core", "--out", str(out)]
    assert cli.main(argv) == 0
    kinds = Counter(orjson.loads(line)["resourceType"] for line in out.read_bytes().splitlines())
    assert kinds["Provenance"] == kinds["CarePlan"] == 3
    with pytest.raises(SystemExit) as exited:
        cli.main(["sample", "--shape", "epic", "--out", str(out)])
    assert exited.value.code == 2
    assert "invalid choice: 'epic'" in capsys.readouterr().err
