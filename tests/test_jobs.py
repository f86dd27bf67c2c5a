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


def _count_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    forked: list[int] = []
    fork = files._forked

    def counting(work: files._Work, plan: object, parts: int, jobs: int, targets: object) -> object:
        forked.append(jobs)
        return fork(work, plan, parts, jobs, targets)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "_forked", counting)
    return forked


def test_several_processes_write_what_one_writes_in_the_same_order(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample's planted problems include pairs of patients seen by one therapist in the
    same minutes: one-on-one across patients must be found even when the two patients are
    decided in different processes (each reads the others' procedures as colleagues')."""
    monkeypatch.setattr(files, "MIN_VISITS_PER_JOB", 10)
    forked = _count_forks(monkeypatch)
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


def test_a_large_file_is_decided_a_part_at_a_time_with_the_same_outputs(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is bounded by deciding a large file in parts of PART_VISITS encounters (the
    patients split between them), one after another in one process."""
    path = _sample(tmp_path, visits=300, seed=12)
    whole = _run(path, settings, jobs=1)
    parts: list[int] = []
    read = files._Work.part

    def counting(self: files._Work, plan: object, index: int, s: object) -> object:
        parts.append(index)
        return read(self, plan, index, s)  # type: ignore[arg-type]

    monkeypatch.setattr(files._Work, "part", counting)
    monkeypatch.setattr(files, "PART_VISITS", 60)
    monkeypatch.setattr(files, "WHOLE_BYTES", 0)
    forked = _count_forks(monkeypatch)
    in_parts = _run(path, settings, jobs=1)
    assert forked == []
    assert sorted(parts) == list(range(len(parts)))
    assert len(parts) >= 5
    assert in_parts[:3] == whole[:3]
    assert in_parts[3].findings_by_code == whole[3].findings_by_code  # type: ignore[attr-defined]


def test_a_bundle_with_full_urls_keeps_each_patient_in_one_part(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """References by fullUrl (urn:uuid) in a transaction Bundle name the same patient as
    `Patient/id` does: a part holds a patient's resources whichever way they are referenced."""
    from plugin.sample import as_transaction

    spec = SampleSpec(visits=80, seed=13, days=2, problem_rate=0.3)
    path = tmp_path / "visits.json"
    path.write_bytes(orjson.dumps(as_transaction(list(generate(spec)))))
    whole = _run(path, settings, jobs=1)
    monkeypatch.setattr(files, "PART_VISITS", 20)
    monkeypatch.setattr(files, "WHOLE_BYTES", 0)
    in_parts = _run(path, settings, jobs=1)
    assert in_parts[:3] == whole[:3]


def test_a_small_file_is_decided_in_one_process(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    forked = _count_forks(monkeypatch)
    path = _sample(tmp_path, visits=30, seed=3)
    summary = _run(path, settings, jobs=4)[3]
    assert forked == []
    assert summary.days == 30  # type: ignore[attr-defined]


def test_a_process_that_fails_stops_the_run_with_its_reason(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing half-written passes for a whole run: the caller discards the outputs."""
    monkeypatch.setattr(files, "MIN_VISITS_PER_JOB", 10)

    def broken(self: files._Work, plan: object, index: int, s: object) -> object:
        raise OSError("disk full")

    monkeypatch.setattr(files._Work, "part", broken)
    path = _sample(tmp_path, visits=40, seed=5)
    with pytest.raises(RuntimeError, match=r"process 1 of 2 failed: OSError: disk full"):
        _run(path, settings, jobs=2)


def test_a_resource_of_the_wrong_shape_in_a_part_is_bad_input(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a forked process, it is still the caller's InputError (exit status 2)."""
    from fhir_mappings.bundle_io import InputError

    monkeypatch.setattr(files, "MIN_VISITS_PER_JOB", 10)
    path = _sample(tmp_path, visits=40, seed=6)
    lines = path.read_bytes().splitlines()
    broken = next(i for i, line in enumerate(lines) if b'"resourceType":"Procedure"' in line)
    resource = orjson.loads(lines[broken])
    resource["bodySite"] = True  # a list of CodeableConcepts in FHIR R4
    lines[broken] = orjson.dumps(resource)
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(InputError, match=r"is not valid FHIR R4"):
        _run(path, settings, jobs=2)
