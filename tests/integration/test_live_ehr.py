"""TheraCharge against a real FHIR server (sekmet-fhir): read, decide, write — idempotently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.config.files import Settings, load_settings
from plugin.gateway.errors import FatalFhirError, TemporaryFhirError
from plugin.gateway.factory import connect
from plugin.gateway.gather import Gatherer
from plugin.pipeline.billing_day import DayRun, DaySource, WriteMode, days_between, run_day
from plugin.store import Store
from tests.ehr import Ehr, copy_key_pair, load_sample, running_ehr, smart_server_auth
from tests.helpers.live import ours
from tests.integration.conftest import ENTERED

ROOT = Path(__file__).resolve().parents[2]


def run(settings: Settings, gatherer: Gatherer, encounter: str, when: datetime = ENTERED) -> DayRun:
    return run_day(settings, encounter, DaySource(gatherer), WriteMode.WRITE, when, "cli")


def line_state(run_: DayRun) -> dict[str, tuple[Any, ...]]:
    return {
        ln.key: (ln.units, ln.minutes, ln.status, tuple(h.code for h in ln.holds))
        for ln in run_.decision.lines
    }


def test_every_decided_line_is_written_once_and_a_rerun_writes_nothing(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    ids = [str(e["id"]) for e in days_between(gatherer, "2026-11-01", None)]
    assert len(ids) == 8
    first = [run(live_settings, gatherer, e) for e in ids]
    stored = ours(ehr, live_settings)
    decided = {ln.key: ln for r in first for ln in r.decision.lines}
    assert set(stored) == set(decided)
    for key, item in stored.items():
        assert item["status"] == decided[key].status.value
        assert item["quantity"]["value"] == decided[key].units
    assert len(ehr.search("Provenance?_count=100")) == 8
    versions = {k: v["meta"]["versionId"] for k, v in stored.items()}
    again = [run(live_settings, gatherer, e, ENTERED + timedelta(hours=3)) for e in ids]
    assert all(not r.written and r.plan is not None and r.plan.entries == [] for r in again)
    assert {k: v["meta"]["versionId"] for k, v in ours(ehr, live_settings).items()} == versions


def _procedure(ehr: Ehr, pid: str) -> dict[str, Any]:
    return requests.get(f"{ehr.base_url}/Procedure/{pid}", timeout=10).json()


def _put(ehr: Ehr, resource: dict[str, Any]) -> None:
    url = f"{ehr.base_url}/{resource['resourceType']}/{resource['id']}"
    requests.put(url, json=resource, timeout=10).raise_for_status()


def _timed_procedure(run_: DayRun, code: str | None = None) -> str:
    for line in run_.decision.lines:
        if line.kind.value == "timed-15" and (code is None or line.code == code) and line.services:
            return line.services[0].reference.split("/", 1)[1]
    raise AssertionError("no timed line in this visit")


def test_changed_minutes_update_exactly_the_lines_whose_charge_changed(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    before = run(live_settings, gatherer, "enc-0001")
    versions = {k: v["meta"]["versionId"] for k, v in ours(ehr, live_settings).items()}
    procedure = _procedure(ehr, _timed_procedure(before))
    start = datetime.fromisoformat(procedure["performedPeriod"]["start"])
    procedure["performedPeriod"]["end"] = (start + timedelta(minutes=38)).isoformat()
    _put(ehr, procedure)
    after = run(live_settings, gatherer, "enc-0001")
    old, new = line_state(before), line_state(after)
    changed = {k for k in new if new[k] != old.get(k)}
    assert changed  # 38 minutes is a different charge than before
    assert set(after.plan.updated) == changed  # exactly the lines whose charge changed
    assert after.plan.created == []
    stored = ours(ehr, live_settings)
    for key in stored:
        moved = stored[key]["meta"]["versionId"] != versions.get(key)
        assert moved == (key in after.plan.updated or key in after.plan.created), key
    assert set(after.plan.unchanged) == set(new) - set(after.plan.updated) - set(after.plan.created)


def test_a_deleted_procedure_leaves_its_line_entered_in_error(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    before = run(live_settings, gatherer, "enc-0002")
    lone = next(ln for ln in before.decision.lines if len(ln.services) == 1 and not ln.derived_from)
    pid = lone.services[0].reference.split("/", 1)[1]
    requests.delete(f"{ehr.base_url}/Procedure/{pid}", timeout=10).raise_for_status()
    for obs in ehr.search(f"Observation?part-of=Procedure/{pid}"):
        requests.delete(f"{ehr.base_url}/Observation/{obs['id']}", timeout=10)
    after = run(live_settings, gatherer, "enc-0002")
    assert lone.key in after.plan.voided
    assert ours(ehr, live_settings)[lone.key]["status"] == "entered-in-error"
    assert not run(live_settings, gatherer, "enc-0002").written  # and it stays so


def test_a_billed_charge_item_is_untouched_and_a_correction_is_reported(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    before = run(live_settings, gatherer, "enc-0003")
    pid = _timed_procedure(before)
    key = next(
        ln.key
        for ln in before.decision.lines
        if any(s.reference == f"Procedure/{pid}" for s in ln.services)
    )
    billed = ours(ehr, live_settings)[key]
    billed["status"] = "billed"  # the billing system took it
    _put(ehr, billed)
    billed_version = ours(ehr, live_settings)[key]["meta"]["versionId"]
    procedure = _procedure(ehr, pid)
    start = datetime.fromisoformat(procedure["performedPeriod"]["start"])
    procedure["performedPeriod"]["end"] = (start + timedelta(minutes=52)).isoformat()
    _put(ehr, procedure)
    after = run(live_settings, gatherer, "enc-0003")
    assert any(c.startswith(key) for c in after.plan.corrections)
    now = ours(ehr, live_settings)[key]
    assert (now["status"], now["meta"]["versionId"]) == ("billed", billed_version)


def test_eight_parallel_runs_of_one_encounter_leave_one_charge_item_per_line(
    ehr: Ehr, live_settings: Settings
) -> None:
    env = {**os.environ, "THERACHARGE_FHIR_BASE_URL": ehr.base_url}
    command = [
        str(Path(sys.executable).with_name("theracharge")),
        "process",
        "--encounter",
        "enc-0004",
    ]
    runs = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(8)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in runs]
    assert [p.returncode for p in runs] == [0] * 8, errors
    stored = ours(ehr, live_settings)
    keys = [k for k in stored if k.startswith("Patient/pat-0004/")]
    decided = run(live_settings, Gatherer(connect(live_settings.fhir)), "enc-0004")
    assert sorted(keys) == sorted(ln.key for ln in decided.decision.lines)
    assert not decided.written
    identifiers = Counter(i["identifier"][0]["value"] for i in ehr.search("ChargeItem?_count=100"))
    assert all(n == 1 for n in identifiers.values())


def test_one_read_and_at_most_one_write_per_triggered_day(
    ehr: Ehr, live_settings: Settings, gatherer: Gatherer
) -> None:
    coverage = ehr.search("Coverage?_id=cov-0005")[0]  # a Medicare day, whatever the sample drew
    coverage["payor"] = [{"reference": "Organization/payer-medicare-b"}]
    ehr.post({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": coverage, "request": {"method": "PUT", "url": "Coverage/cov-0005"}}
    ]})  # fmt: skip
    gatherer.supported()  # the CapabilityStatement is read once per server, not per encounter
    client = gatherer.client
    named = DaySource(gatherer, None, ("Patient/pat-0005", "2026-11-02"))
    sent = client.requests_sent
    first = run_day(live_settings, "enc-0005", named, WriteMode.WRITE, ENTERED, "notification")
    assert first.written
    # a Medicare day: its episode rules read the patient's history too, in one batch, and the
    # performers' services for other patients (one-on-one across patients) in the same batch
    assert first.decision.visit.payer == "medicare-part-b"
    assert client.requests_sent - sent == 3  # the day, the history and performers', a write
    sent = client.requests_sent
    again = run_day(live_settings, "enc-0005", named, WriteMode.WRITE, ENTERED, "notification")
    assert not again.written
    assert client.requests_sent - sent == 2  # the two reads, nothing to write
    sent = client.requests_sent
    run(live_settings, gatherer, "enc-0005")  # named by id only: its day is read first
    assert client.requests_sent - sent == 3  # the encounter, its day, the history batch


def test_the_server_stopping_mid_run_is_a_clear_error_with_no_partial_writes(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ehr"
    with running_ehr(folder) as ehr:
        load_sample(ehr, visits=4, seed=5, problem_rate=0.0)
        port = int(ehr.base_url.split(":")[2].split("/")[0])
        settings = load_settings(
            {"THERACHARGE_FHIR_BASE_URL": ehr.base_url, "THERACHARGE_FHIR_RETRY_SECONDS": "1"}
        )
        gatherer = Gatherer(connect(settings.fhir))
        done = [run(settings, gatherer, e) for e in ("enc-0001", "enc-0002")]
        ehr.stop()
        with pytest.raises(TemporaryFhirError, match="cannot reach the EHR"):
            run(settings, gatherer, "enc-0003")
        cli = subprocess.run(
            [
                str(Path(sys.executable).with_name("theracharge")),
                "process",
                "--since",
                "2026-11-01",
            ],
            env={
                **os.environ,
                "THERACHARGE_FHIR_BASE_URL": ehr.base_url,
                "THERACHARGE_FHIR_RETRY_SECONDS": "1",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert cli.returncode == 1
        assert "cannot reach the EHR" in cli.stderr
    with running_ehr(folder, port=port) as again:  # same database: what did the EHR keep?
        stored = ours(again, settings)
        assert set(stored) == {ln.key for r in done for ln in r.decision.lines}


def test_smart_backend_services_guard_the_ehr_and_let_us_in(tmp_path: Path) -> None:
    key_path, jwks = copy_key_pair(tmp_path)
    server_auth = smart_server_auth(jwks)
    with running_ehr(tmp_path / "ehr", server_auth=server_auth) as ehr:
        assert requests.get(f"{ehr.base_url}/Encounter", timeout=10).status_code == 401
        env = {
            "THERACHARGE_FHIR_BASE_URL": ehr.base_url,
            "THERACHARGE_SMART_CLIENT_ID": "theracharge",
            "THERACHARGE_SMART_PRIVATE_KEY": str(key_path),
            "THERACHARGE_SMART_KID": "theracharge-test",
        }
        settings = load_settings(env)
        client = connect(settings.fhir)
        bundle = load_sample_with(client, visits=2)
        assert bundle
        result = run(settings, Gatherer(client), "enc-0001")
        assert result.written
        items = client.search("ChargeItem?_count=50").entries
        assert {e["resource"]["identifier"][0]["value"] for e in items} == {
            ln.key for ln in result.decision.lines
        }
        (tmp_path / "other").mkdir()
        wrong_key, _ = copy_key_pair(tmp_path / "other")  # a key the EHR does not know
        intruder = connect(
            load_settings({**env, "THERACHARGE_SMART_PRIVATE_KEY": str(wrong_key)}).fhir
        )
        with pytest.raises(FatalFhirError, match="HTTP 401"):
            intruder.search("Encounter?_count=1")


def load_sample_with(client: Any, visits: int) -> dict[str, Any]:
    """Load sample visits through our own authenticated client (the EHR needs a token)."""
    from plugin.sample import SampleSpec, as_transaction, generate

    bundle = as_transaction(generate(SampleSpec(visits=visits, seed=3, problem_rate=0.0)))
    client.transaction(bundle)
    return bundle


def test_a_dry_run_prints_the_transaction_and_writes_nothing(
    ehr: Ehr, live_settings: Settings
) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("theracharge")),
            "process",
            "--encounter",
            "enc-0006",
            "--dry-run",
            "--fhir-base",
            ehr.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["written"]["sent"] is False
    kinds = Counter(e["resource"]["resourceType"] for e in body["would_write"]["entry"])
    assert kinds == {"ChargeItem": len(body["lines"]), "Provenance": 1}
    assert ours(ehr, live_settings) == {}


def test_a_range_run_decides_days_concurrently_like_one_at_a_time(
    tmp_path: Path, ehr: Ehr, live_settings: Settings
) -> None:
    """`process --since --jobs 4` (four days at a time) writes what a run one day at a time
    writes (the sample's 8 days, on a second EHR loaded alike), records each day in the run
    ledger, and a rerun writes nothing."""

    def process(base_url: str, concurrency: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(Path(sys.executable).with_name("theracharge")),
                "process",
                "--since",
                "2026-11-01",
                "--jobs",
                concurrency,
            ],
            env={
                **os.environ,
                "THERACHARGE_FHIR_BASE_URL": base_url,
                "THERACHARGE_FHIR_CONCURRENCY": concurrency,
                "THERACHARGE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def contents(server: Ehr, settings: Settings) -> dict[str, Any]:
        return {
            key: (item["status"], item["quantity"], item.get("priceOverride"))
            for key, item in ours(server, settings).items()
        }

    done = process(ehr.base_url, "4")
    assert done.returncode == 0, done.stderr
    ledger = Store(f"sqlite:///{tmp_path / 'cli.db'}").latest_runs()
    assert {run.trigger for run in ledger} == {"cli"}
    assert len({run.day for run in ledger if run.outcome == "written"}) == 8  # each day's row
    concurrent = contents(ehr, live_settings)
    assert len(concurrent) > 8
    versions = {k: v["meta"]["versionId"] for k, v in ours(ehr, live_settings).items()}
    again = process(ehr.base_url, "4")
    assert again.returncode == 0, again.stderr
    assert {k: v["meta"]["versionId"] for k, v in ours(ehr, live_settings).items()} == versions
    with running_ehr(tmp_path / "second") as other:
        load_sample(other, visits=8, seed=21, problem_rate=0.0)  # as the `ehr` fixture loads
        settings = load_settings({"THERACHARGE_FHIR_BASE_URL": other.base_url})
        one = process(other.base_url, "1")
        assert one.returncode == 0, one.stderr
        assert contents(other, settings) == concurrent
