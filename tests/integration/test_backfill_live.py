"""`theracharge backfill` without a broker (the embedded default: the days decided in the
command's own process) against the sandbox EHR: a dry run writes nothing, a run writes every
day, a second run finds every day unchanged; progress and the report; bad arguments exit 2.
The same command on Celery workers is in tests/reliability/test_layout.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from plugin.config.files import load_settings
from plugin.gateway.client import iter_resources
from plugin.gateway.factory import connect
from plugin.store import Store
from tests.ehr import Ehr

THERACHARGE = str(Path(sys.executable).with_name("theracharge"))


def _backfill(ehr: Ehr, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")}
    env.update(
        {
            "THERACHARGE_FHIR_BASE_URL": ehr.base_url,
            "THERACHARGE_INSTANCE_DIR": str(folder / "instance"),
            "THERACHARGE_FHIR_CONCURRENCY": "3",
        }
    )
    return subprocess.run(
        [THERACHARGE, "backfill", *args],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _charge_items(ehr: Ehr) -> int:
    settings = load_settings({"THERACHARGE_FHIR_BASE_URL": ehr.base_url})
    page = connect(settings.fhir).search("ChargeItem?_count=200")
    return sum(1 for _ in iter_resources(page.entries))


def test_a_backfill_in_process_writes_each_day_once_and_reports(ehr: Ehr, tmp_path: Path) -> None:
    dry = _backfill(ehr, tmp_path, "--since", "2026-11-01", "--until", "2026-11-30", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "backfill 1: 8 billing day(s): written 0, unchanged 0, planned 8 (dry run)" in dry.stdout
    assert _charge_items(ehr) == 0

    first = _backfill(ehr, tmp_path, "--since", "2026-11-01")
    assert first.returncode == 0, first.stderr
    assert "backfill 2: 8 billing day(s) to decide" in first.stderr
    assert "backfill 2: 8 billing day(s): written 8, unchanged 0" in first.stdout
    assert "failed 0" in first.stdout
    written = _charge_items(ehr)
    assert written >= 8

    again = _backfill(ehr, tmp_path, "--since", "2026-11-01")
    assert again.returncode == 0, again.stderr
    assert "written 0, unchanged 8" in again.stdout
    assert _charge_items(ehr) == written  # never twice

    store = Store(f"sqlite:///{tmp_path / 'instance' / 'theracharge.db'}")
    progress = store.backfill_progress(2)
    assert (progress["days"], progress["written"], progress["failed"]) == (8, 8, 0)
    assert progress["lines"] >= 8
    triggers = {run.trigger for run in store.runs(limit=100)}
    assert triggers == {"backfill"}  # each written day in the run ledger; the dry run is not

    resumed = _backfill(ehr, tmp_path, "--resume", "2")  # nothing left: the report again
    assert resumed.returncode == 0, resumed.stderr
    assert "backfill 2: 0 billing day(s) to decide" in resumed.stderr
    assert "written 8, unchanged 0" in resumed.stdout


def test_a_backfill_with_bad_arguments_exits_2_naming_them(ehr: Ehr, tmp_path: Path) -> None:
    for args, message in (
        (["--since", "2026-13-01"], "--since: '2026-13-01' is not a date"),
        (["--until", "2026-11-30", "--resume", "1"], "--until goes with --since"),
        (["--resume", "99"], "--resume: no backfill 99"),
        (["--since", "2026-11-30", "--until", "2026-11-01"], "--until: 2026-11-01 is before"),
        (["--since", "2026-11-01", "--no-wait"], "--no-wait needs THERACHARGE_BROKER_URL"),
    ):
        answer = _backfill(ehr, tmp_path, *args)
        assert answer.returncode == 2, (args, answer.stderr)
        assert message in answer.stderr, (args, answer.stderr)
