"""`theracharge demo --once`: its report agrees with the EHR's actual ChargeItems, and with an
offline decision of the same clinic day; a second run starts clean and says the same."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugin.commands.demo import demo_sample
from plugin.config.files import load_settings
from plugin.pipeline.files import OfflineOutputs, process_file
from plugin.sample import as_transaction, generate
from tests.ehr import sekmet_executable


def run_demo(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("theracharge")),
        "demo",
        "--once",
        "--sekmet",
        sekmet_executable(),
        "--dir",
        str(folder),
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _the_pages_agree_with(report: dict[str, Any], folder: Path, make_app: Any) -> None:
    from plugin.config.tokens import token_hash
    from plugin.render.dashboard import dashboard

    app = make_app(
        THERACHARGE_INSTANCE_DIR=str(folder / "instance"),
        THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('t')}",
    )
    client = app.test_client()
    with client.session_transaction() as session:
        session.update(who="ann", role="admin", csrf="x")
    worklist = client.get("/worklist?show=held").get_data(as_text=True)
    held_rows = worklist.count('<td class="visit">')
    assert held_rows == report["lines_by_status"].get("planned", 0)
    counts = worklist[worklist.index('aria-label="Held lines by gap"') :].split("</p>")[0]
    by_reason = {
        code: int(n) for code, n in re.findall(r"<small>([a-z0-9-]+)</small>: (\d+)", counts)
    }
    assert by_reason == {g["code"]: g["count"] for g in report["held_lines_by_reason"]}
    warned = client.get("/worklist?show=warnings").get_data(as_text=True)
    counts = warned[warned.index('aria-label="Warnings by kind"') :].split("</p>")[0]
    by_kind = {
        code: int(n) for code, n in re.findall(r"<small>([a-z0-9-]+)</small>: (\d+)", counts)
    }
    assert by_kind == {g["code"]: g["count"] for g in report["lines_with_warnings_by_kind"]}
    period = report["urls"]["dashboard"].partition("?")[2]
    page = client.get(f"/dashboard?{period}").get_data(as_text=True)
    for status, n in report["lines_by_status"].items():
        assert f'<span class="total-{status}">{n}</span>' in page
    # opened without a period, the dashboard shows the demo's day too (the latest with data)
    default = client.get("/dashboard").get_data(as_text=True)
    assert "the latest date of service with charges" in default
    for status, n in report["lines_by_status"].items():
        assert f'<span class="total-{status}">{n}</span>' in default
    state = app.extensions["theracharge"]
    since, until = (p.partition("=")[2] for p in period.split("&"))
    figures = dashboard(state.store.runs(limit=20_000), since, until)
    assert dict(figures.units_by_code) == report["billable_units_by_code"]


def test_the_demo_report_matches_the_ehrs_charge_items(tmp_path: Path, make_app: Any) -> None:
    folder = tmp_path / ".demo"
    done = run_demo(folder)
    assert done.returncode == 0, done.stderr[-3000:]
    # 16 patients, 3 of them seen again in the afternoon (enc-0005-pm, -0006-pm, -0007-pm)
    assert "visits processed: 19 (8 by CDS hook, 11 by Subscription)" in done.stdout
    assert "billing days with a second visit: 3 " in done.stdout
    # --once: the servers stop with the report, so it names no address to visit …
    assert "hold worklist:" not in done.stdout
    assert "--once: the EHR and TheraCharge stop now" in done.stdout
    report = json.loads((folder / "report.json").read_text())
    # … while report.json keeps where they were (this run's ports)
    assert report["urls"]["worklist"].startswith("http://127.0.0.1:")
    assert report["urls"]["admin_page"].startswith("http://127.0.0.1:")
    items = json.loads((folder / "ehr-chargeitems.json").read_text())
    ours = {
        i["identifier"][0]["value"]: i
        for i in items
        if i["identifier"][0]["system"].endswith("/NamingSystem/charge-line")
    }
    assert report["charge_items_by_status"] == dict(Counter(i["status"] for i in ours.values()))
    assert sum(report["units_by_code_and_method"].values()) == sum(
        i["quantity"]["value"] for i in ours.values()
    )
    # The same day decided offline, from the same sample: the same lines, units and statuses.
    sample = tmp_path / "day.json"
    sample.write_bytes(orjson.dumps(as_transaction(generate(demo_sample(16, 2026)))))
    out = io.BytesIO()
    process_file(
        str(sample), load_settings({}), OfflineOutputs(report=out), datetime.now().astimezone()
    )
    offline = {
        ln["key"]: (ln["units"], ln["status"])
        for e in orjson.loads(out.getvalue())["encounters"]
        for ln in e["lines"]
    }
    assert {k: (i["quantity"]["value"], i["status"]) for k, i in ours.items()} == offline
    # the counts agree: the demo's held lines by reason (the worklist's count), the EHR's held
    # ChargeItems by their hold-reason extensions, and the offline run's summary
    in_the_ehr: Counter[str] = Counter()
    for item in ours.values():
        if item["status"] == "planned":
            in_the_ehr.update(
                {e["valueCoding"]["code"] for e in item.get("extension", [])
                 if e["url"].endswith("/hold-reason")}
            )  # fmt: skip
    shown = {g["code"]: g["count"] for g in report["held_lines_by_reason"]}
    assert shown == dict(in_the_ehr)
    assert shown == orjson.loads(out.getvalue())["summary"]["holds_by_code"]
    # … and the pages count as the demo says: the worklist's held lines and reasons, the
    # dashboard's totals and units, opened on the period the demo printed
    _the_pages_agree_with(report, folder, make_app)
    again = run_demo(folder)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (
        json.loads((folder / "report.json").read_text())["charge_items_by_status"]
        == report["charge_items_by_status"]
    )


@pytest.mark.parametrize(
    ("outlet", "received"), [("hl7v2", "billing_system"), ("oracle-health", "millennium")]
)
def test_each_outlets_demo_delivers_each_billable_line_once(
    tmp_path: Path, outlet: str, received: str
) -> None:
    """The same clinic day with the charges going to a billing system over HL7 v2, or through
    Oracle Health's ChargeItem operations (the demo's stand-ins): no ChargeItem of ours written
    the FHIR way; what the receiver holds — units per code and modifiers — is the offline
    decision's billable lines, each once."""
    folder = tmp_path / ".demo"
    done = run_demo(folder, "--outlet", outlet)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((folder / "report.json").read_text())
    got = report[received]
    if outlet == "hl7v2":
        assert "DFT^P03 message(s)" in done.stdout
        assert set(got["acks"]) == {"AA"}
    else:
        assert "Oracle Health (stand-in) took" in done.stdout
        assert set(got["operations"]) == {"$create"}  # a first run: nothing to modify
    assert report["charge_items_by_status"] == {}  # no ChargeItem of ours the FHIR way
    sample = tmp_path / "day.json"
    sample.write_bytes(orjson.dumps(as_transaction(generate(demo_sample(16, 2026)))))
    out = io.BytesIO()
    process_file(
        str(sample), load_settings({}), OfflineOutputs(report=out), datetime.now().astimezone()
    )
    billable: Counter[str] = Counter()
    for encounter in orjson.loads(out.getvalue())["encounters"]:
        for line in encounter["lines"]:
            if line["status"] == "billable" and line["units"] > 0:
                billable["-".join([line["code"], *line["modifiers"]])] += line["units"]
    assert got["units_by_code"] == dict(sorted(billable.items()))
