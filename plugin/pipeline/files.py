"""A Bundle or NDJSON file of visits decided offline: grouped into billing days, the transaction
and the report streamed out (`theracharge process --bundle`)."""

from __future__ import annotations

import gc
import heapq
import multiprocessing
import pickle
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from fhir_mappings.assemble import InvalidResource, VisitAssembler
from fhir_mappings.bundle_io import InputError, JsonArrayWriter, read_resources
from fhir_mappings.chargeitem import RenderContext, transaction_entries
from fhir_mappings.strict import validation_error
from plugin.config.files import Settings
from plugin.pipeline.stages import decide, failure_reason, render_context, translate_tables
from plugin.render.report import RunSummary, encounter_reports, visit_text
from plugin.rules.day import days_of


@dataclass
class OfflineOutputs:
    """Where an offline run writes: each may be None (not wanted)."""

    bundle: IO[bytes] | None = None
    report: IO[bytes] | None = None
    text: IO[str] | None = None  # each billing day in a few lines, as it is decided


# Below this many encounters per process a file is decided in one process: starting another
# costs more than it saves.
MIN_VISITS_PER_JOB = 500


def process_file(
    path: str,
    settings: Settings,
    outputs: OfflineOutputs,
    entered: datetime,
    strict: bool = False,
    jobs: int = 1,
) -> RunSummary:
    """Decide every visit of a Bundle or NDJSON file; stream the transaction and the report.

    With `jobs` > 1 the billing days are decided in that many processes, each patient's days
    in one of them (docs/performance.md "Batch runs on several cores"); the outputs are the
    same, in the same order, as from one process.

    Raises fhir_mappings.bundle_io.InputError for input that is not JSON or not FHIR; the caller
    discards partial outputs (bundle_io.atomic_output).
    """
    with _no_cyclic_gc():
        return _process(path, settings, outputs, entered, strict, jobs)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector during a batch.

    A batch allocates millions of small acyclic objects while holding the run's fact records;
    each full collection rescans all of them, which cost about half the run time here
    (docs/performance.md, "The service"). Reference counting still frees them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class _DayOutput:
    """One billing day, decided and rendered: what the writer needs, in the file's order."""

    position: int  # the arrival order of the day's first encounter
    bundle: list[bytes]
    report: list[bytes]
    text: str | None = None
    failure: str | None = None


def _process(
    path: str, settings: Settings, outputs: OfflineOutputs, entered: datetime, strict: bool,
    jobs: int,
) -> RunSummary:  # fmt: skip
    assembler = VisitAssembler(translate_tables(settings))
    for resource, full_url in read_resources(path):
        try:
            assembler.add(resource, full_url, validation_error(resource) if strict else None)
        except InvalidResource as exc:
            raise InputError(f"{path}: {exc}") from exc
    ctx = render_context(settings, entered, "file")
    summary = RunSummary()
    bundle = JsonArrayWriter(
        outputs.bundle, b'{"resourceType":"Bundle","type":"transaction","entry":[\n', b"\n]}\n"
    )
    report = JsonArrayWriter(outputs.report, b'{"encounters":[\n', b"\n],\n")
    jobs = min(jobs, len(assembler.encounter_keys()) // MIN_VISITS_PER_JOB)
    part = _Part(assembler, settings, ctx, outputs.text is not None)
    forked = jobs > 1 and "fork" in multiprocessing.get_all_start_methods()
    if forked:
        for handle in (outputs.bundle, outputs.report, outputs.text, sys.stdout, sys.stderr):
            if handle is not None:
                handle.flush()  # a forked process must not write out our buffers again
        days: Iterable[_DayOutput] = _decide_in_processes(part, jobs, summary)
    else:
        days = part.days(None, summary)
    for day in days:
        for entry in day.bundle:
            bundle.write_raw(entry)
        for entry in day.report:
            report.write_raw(entry)
        if day.text is not None and outputs.text is not None:
            print(day.text, file=outputs.text)
        if day.failure is not None:
            summary.failures.append(day.failure)
    if not forked:  # a forked run has them from its first part
        summary.problems = list(assembler.problems)
    bundle.close()
    report.close()
    if outputs.report is not None:
        outputs.report.write(b'"summary":' + orjson.dumps(summary.as_json()) + b"}\n")
    return summary


@dataclass
class _Part:
    """What deciding a part of the file's days needs; a forked process inherits it whole."""

    assembler: VisitAssembler
    settings: Settings
    ctx: RenderContext
    want_text: bool

    def days(self, only: Callable[[str], bool] | None, summary: RunSummary) -> Iterator[_DayOutput]:
        """The billing days of the encounters `only` accepts (all when None), decided and
        rendered in the order first seen; `summary` counts them (failures excepted: the
        writer adds those in the file's order)."""
        order = {key: i for i, key in enumerate(self.assembler.encounter_keys())}
        for day in days_of(self.assembler.visits(only)):
            position = min(order[v.encounter] for v in day)
            try:
                decision = decide(self.settings, day)
            except Exception as exc:  # noqa: BLE001 -- one day never stops the file; reported
                names = ", ".join(v.encounter for v in day)
                yield _DayOutput(position, [], [], failure=f"{names}: {failure_reason(exc)}")
                continue
            summary.add(decision)
            yield _DayOutput(
                position,
                [orjson.dumps(e) for e in transaction_entries(decision, self.ctx)],
                [orjson.dumps(e) for e in encounter_reports(decision)],
                visit_text(decision) if self.want_text else None,
            )


def _decide_in_processes(part: _Part, jobs: int, summary: RunSummary) -> Iterator[_DayOutput]:
    """Decide the days in `jobs` forked processes, each patient's days in one of them, then
    yield them merged back into the file's order.

    The facts read, the patients' treatment days and the index of procedures by performer
    (for one-on-one across patients, which looks across the whole file) are built once here
    and shared with the processes by fork. Each process writes its days to a file of its own;
    they are read back merged by position, so the outputs are those of one process.
    """
    part.assembler.prepare()
    with tempfile.TemporaryDirectory(prefix="theracharge-jobs-") as folder:
        processes = []
        fork = multiprocessing.get_context("fork")
        for index in range(jobs):
            target = Path(folder) / f"part-{index}"
            process = fork.Process(target=_run_part, args=(part, index, jobs, target))
            process.start()
            processes.append((process, target))
        for process, _ in processes:
            process.join()
        results = []
        for index, (process, target) in enumerate(processes):
            result = _read_result(target.with_suffix(".done"))
            if process.exitcode != 0 or result is None:
                raise RuntimeError(f"part {index + 1} of {jobs} stopped: {result or 'no result'}")
            if isinstance(result, str):
                raise RuntimeError(f"part {index + 1} of {jobs} failed: {result}")
            results.append(result)
        for found in results:
            summary.merge(found)
        yield from heapq.merge(*(_records(t) for _, t in processes), key=lambda d: d.position)


def _shard(assembler: VisitAssembler, jobs: int, index: int) -> Callable[[str], bool]:
    """Which encounters part `index` decides: its patients' (a patient's days, and so their
    episode, stay in one part); an encounter without a patient by its own key."""

    def mine(encounter: str) -> bool:
        owner = assembler.patient_of(encounter) or encounter
        return zlib.crc32(owner.encode()) % jobs == index

    return mine


def _run_part(part: _Part, index: int, jobs: int, target: Path) -> None:
    """In a forked process: decide part `index`'s days into `target`, then leave the summary
    (or what went wrong) beside it."""
    summary = RunSummary()
    try:
        with target.open("wb") as out:
            for day in part.days(_shard(part.assembler, jobs, index), summary):
                pickle.dump(day, out, protocol=pickle.HIGHEST_PROTOCOL)
        if index == 0:  # the problems outside any visit are the same in every part
            summary.problems = list(part.assembler.problems)
        result: RunSummary | str = summary
    except Exception as exc:  # noqa: BLE001 -- reported by the parent, which raises it
        result = f"{type(exc).__name__}: {exc}"
    with target.with_suffix(".done").open("wb") as out:
        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)


def _read_result(path: Path) -> RunSummary | str | None:
    if not path.exists():
        return None
    with path.open("rb") as handle:
        found: RunSummary | str = pickle.load(handle)  # our own child's file
    return found


def _records(path: Path) -> Iterator[_DayOutput]:
    with path.open("rb") as handle:
        while True:
            try:
                yield pickle.load(handle)  # our own child's file
            except EOFError:
                return
