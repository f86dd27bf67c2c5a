"""An offline batch decided in several processes (`theracharge process --bundle --jobs N`):
each patient's days in one process, the outputs the same, in the same order, as from one."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from plugin.config.files import Settings
from plugin.pipeline import files
from plugin.pipeline.files import OfflineOutputs, process_file
from plugin.sample import SampleSpec, generate

ENTERED = datetime.fromisoformat("2026-11-30T12:00:00+00:00")


def _sample(tmp_path: Path, visits: int, seed: int) -> Path:
    path = tmp_path / "visits.ndjson"
    spec = SampleSpec(visits=visits, seed=seed, days=3, problem_rate=0.6, second_visits=0.2)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in generate(spec)))
    return path


def _run(path: Path, settings: Settings, jobs: int) -> tuple[bytes, bytes, str, object]:
    bundle, report, text = io.BytesIO(), io.BytesIO(), io.StringIO()
    summary = process_file(
        str(path), settings, OfflineOutputs(bundle, report, text), ENTERED, jobs=jobs
    )
    return bundle.getvalue(), report.getvalue(), text.getvalue(), summary


def test_several_processes_write_what_one_writes_in_the_same_order(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample's planted problems include pairs of patients seen by one therapist in the
    same minutes: one-on-one across patients must be found even when the two patients are
    decided in different processes (the index by performer is built before the fork)."""
    monkeypatch.setattr(files, "MIN_VISITS_PER_JOB", 10)
    forked: list[int] = []
    split = files._decide_in_processes

    def counting(part: files._Part, jobs: int, summary: object) -> object:
        forked.append(jobs)
        return split(part, jobs, summary)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "_decide_in_processes", counting)
    path = _sample(tmp_path, visits=300, seed=11)
    one = _run(path, settings, jobs=1)
    assert forked == []
    three = _run(path, settings, jobs=3)
    assert forked == [3]
    assert three[0] == one[0]  # the transaction Bundle, byte for byte
    assert three[1] == one[1]  # the report, its summary included
    assert three[2] == one[2]  # the text per billing day
    summary = three[3]
    assert summary.findings_by_code["concurrent-patients"] > 0  # type: ignore[attr-defined]
    assert summary.visits == one[3].visits  # type: ignore[attr-defined]
    report = orjson.loads(one[1])
    assert len(report["encounters"]) == summary.visits  # type: ignore[attr-defined]


def test_a_small_file_is_decided_in_one_process(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    forked: list[int] = []
    monkeypatch.setattr(files, "_decide_in_processes", lambda *a: forked.append(1) or iter(()))
    path = _sample(tmp_path, visits=30, seed=3)
    summary = _run(path, settings, jobs=4)[3]
    assert forked == []
    assert summary.days == 30  # type: ignore[attr-defined]


def test_a_process_that_fails_stops_the_run_with_its_reason(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing half-written passes for a whole run: the caller discards the outputs."""
    monkeypatch.setattr(files, "MIN_VISITS_PER_JOB", 10)

    def broken(self: files._Part, only: object, summary: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(files._Part, "days", broken)
    path = _sample(tmp_path, visits=40, seed=5)
    with pytest.raises(RuntimeError, match=r"part 1 of 2 failed: OSError: disk full"):
        _run(path, settings, jobs=2)
