"""A Bundle or NDJSON file of visits decided offline: grouped into billing days, the transaction
and the report streamed out (`theracharge process --bundle`)."""

from __future__ import annotations

import gc
import heapq
import math
import multiprocessing
import os
import pickle
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import orjson

from fhir_mappings.assemble import InvalidResource, PerformerIndex, TranslateTables, VisitAssembler
from fhir_mappings.bundle_io import InputError, JsonArrayWriter, read_chosen, read_resources
from fhir_mappings.chargeitem import RenderContext, transaction_entries
from fhir_mappings.partition import EVERY, PartitionPlan
from fhir_mappings.strict import validation_error
from plugin.config.files import Settings
from plugin.jsontypes import Json
from plugin.pipeline.stages import decide, failure_reason, render_context, translate_tables
from plugin.pipeline.year_to_date import YearToDate
from plugin.render.report import RunSummary, encounter_reports, visit_text
from plugin.rules.day import days_of
from plugin.rules.visit import Finding


@dataclass
class OfflineOutputs:
    """Where an offline run writes: each may be None (not wanted)."""

    bundle: IO[bytes] | None = None
    report: IO[bytes] | None = None
    text: IO[str] | None = None  # each billing day in a few lines, as it is decided


# Below this many encounters per process a file is decided in one process: starting another
# costs more than it saves.
MIN_VISITS_PER_JOB = 500
# A file of more encounters than this is decided a part at a time, each part's facts in memory
# alone (the parts split the patients): 25,000 encounters hold about 450 MB.
PART_VISITS = 25_000
# A file smaller than this that one process decides is read whole, without a first pass
# (about 10,000 visits of the sample: well under PART_VISITS).
WHOLE_BYTES = 64 * 1024 * 1024


def process_file(
    path: str,
    settings: Settings,
    outputs: OfflineOutputs,
    entered: datetime,
    strict: bool = False,
    jobs: int = 1,
) -> RunSummary:
    """Decide every visit of a Bundle or NDJSON file; stream the transaction and the report.

    With `jobs` > 1, or a file of more than PART_VISITS encounters, the file is decided in
    parts split by patient — in that many processes, or one part after another — each
    patient's days in one part (docs/performance.md "Large files and several cores"); the
    outputs are the same, in the same order, as from one process reading it whole.

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
    ctx = render_context(settings, entered, "file")
    summary = RunSummary()
    bundle = JsonArrayWriter(
        outputs.bundle, b'{"resourceType":"Bundle","type":"transaction","entry":[\n', b"\n]}\n"
    )
    report = JsonArrayWriter(outputs.report, b'{"encounters":[\n', b"\n],\n")
    work = _Work(path, settings, ctx, strict, outputs.text is not None)
    plan, parts, jobs = _plan(path, jobs, translate_tables(settings))
    if parts == 1:
        days: Iterable[_DayOutput] = work.whole(summary)
    else:
        for handle in (outputs.bundle, outputs.report, outputs.text, sys.stdout, sys.stderr):
            if handle is not None:
                handle.flush()  # a forked process must not write out our buffers again
        days = _decide_in_parts(work, plan, parts, jobs, summary)
    for day in days:
        for entry in day.bundle:
            bundle.write_raw(entry)
        for entry in day.report:
            report.write_raw(entry)
        if day.text is not None and outputs.text is not None:
            print(day.text, file=outputs.text)
        if day.failure is not None:
            summary.failures.append(day.failure)
    bundle.close()
    report.close()
    if outputs.report is not None:
        outputs.report.write(b'"summary":' + orjson.dumps(summary.as_json()) + b"}\n")
    return summary


def _plan(path: str, jobs: int, tables: TranslateTables) -> tuple[_Plan, int, int]:
    """How to split the file: (the plan, how many parts, how many processes).

    A file of at most PART_VISITS encounters that one process decides is read once, whole
    (one of under WHOLE_BYTES without a first pass). Standard input cannot be read twice, so
    it is always decided whole."""
    plan = _Plan(PartitionPlan(), {}, array("H"))
    if path == "-" or not os.path.isfile(path):
        return plan, 1, 1
    if jobs == 1 and os.path.getsize(path) < WHOLE_BYTES:
        return plan, 1, 1
    # The first pass: each encounter's patient, and every procedure for the one-on-one check
    # across patients, indexed by performer once for every part.
    colleagues = VisitAssembler(tables)
    for index, (resource, full_url) in enumerate(read_resources(path)):
        plan.owners.note(index, resource, full_url)
        if resource.get("resourceType") == "Procedure":
            try:
                colleagues.add_colleague(resource, full_url)
            except InvalidResource as exc:
                raise InputError(f"{path}: {exc}") from exc
    colleagues.own_colleagues(plan.owners.owner_of)
    plan.performers.update(colleagues.performer_index())
    colleagues.close()
    jobs = max(1, min(jobs, plan.owners.encounters // MIN_VISITS_PER_JOB))
    if "fork" not in multiprocessing.get_all_start_methods():
        jobs = 1
    parts = max(jobs, math.ceil(plan.owners.encounters / PART_VISITS))
    parts = math.ceil(parts / jobs) * jobs  # every process the same number of parts
    if parts > 1:  # a file of one part is read whole again: no resource's part is asked
        plan.parts = plan.owners.parts(parts)
    return plan, parts, jobs


@dataclass
class _Plan:
    """The first pass's findings: whose part each resource is, and every one-on-one
    procedure of the file by performer."""

    owners: PartitionPlan
    performers: PerformerIndex
    parts: array[int]  # each resource's part, by its position in the file (EVERY: all)


@dataclass
class _Work:
    """What deciding the file, or a part of it, needs; a forked process inherits it whole."""

    path: str
    settings: Settings
    ctx: RenderContext
    strict: bool
    want_text: bool

    def whole(self, summary: RunSummary) -> Iterator[_DayOutput]:
        """Every billing day of the file, read whole in this process."""
        assembler = VisitAssembler(translate_tables(self.settings))
        positions: dict[str, int] = {}
        for index, (resource, full_url) in enumerate(read_resources(self.path)):
            self._add(assembler, resource, full_url, index, positions)
        yield from self._days(assembler, positions, summary)
        summary.problems = list(assembler.problems)

    def part(self, plan: _Plan, index: int, summary: RunSummary) -> Iterator[_DayOutput]:
        """The billing days of part `index`: the file read again, parsing only its
        patients' resources and every resource about no patient (the first pass checked every
        line); the one-on-one check looks through the whole file's procedures (the first
        pass's index)."""
        assembler = VisitAssembler(translate_tables(self.settings))
        assembler.use_performer_index(plan.performers)
        positions: dict[str, int] = {}
        of = plan.parts

        def ours(at: int) -> bool:
            if at >= len(of):
                raise InputError(f"{self.path}: changed while it was read (it grew)")
            return of[at] == index or of[at] == EVERY

        for at, resource, full_url in read_chosen(self.path, ours):
            self._add(assembler, resource, full_url, at, positions)
        yield from self._days(assembler, positions, summary)
        summary.problems = list(assembler.problems)
        assembler.close()  # the next part's facts replace this one's

    def _add(
        self,
        assembler: VisitAssembler,
        resource: Json,
        full_url: str | None,
        index: int,
        positions: dict[str, int],
    ) -> None:
        try:
            assembler.add(resource, full_url, validation_error(resource) if self.strict else None)
        except InvalidResource as exc:
            raise InputError(f"{self.path}: {exc}") from exc
        if resource.get("resourceType") == "Encounter":
            positions[assembler.key_of(resource, full_url)] = index

    def _days(
        self, assembler: VisitAssembler, positions: dict[str, int], summary: RunSummary
    ) -> Iterator[_DayOutput]:
        """The billing days read, decided and rendered in the order first seen; `summary`
        counts them (failures excepted: the writer adds those in the file's order)."""
        days = days_of(assembler.visits())
        year = YearToDate(
            days,
            lambda day: decide(self.settings, day),
            lambda visit: self.settings.payers.resolved(visit.payer).kx_threshold,
        )
        for index, day in enumerate(days):
            position = min(positions.get(v.encounter, -1) for v in day)
            try:
                decision = year.decision(index)
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


def _decide_in_parts(
    work: _Work, plan: _Plan, parts: int, jobs: int, summary: RunSummary
) -> Iterator[_DayOutput]:
    """Decide the file part by part — in this process, or `jobs` forked processes each taking
    every `jobs`-th part — then yield the days merged back into the file's order.

    Each part writes its days, already serialized, to a file of its own; they are read back
    merged by the position of each day's first encounter, so the outputs are those of one
    process reading the file whole (docs/performance.md "Large files and several cores")."""
    with tempfile.TemporaryDirectory(prefix="theracharge-parts-") as folder:
        targets = [Path(folder) / f"part-{index}" for index in range(parts)]
        if jobs == 1:
            results = [_run_parts(work, plan, parts, [0], 1, targets)]
        else:
            results = _forked(work, plan, parts, jobs, targets)
        problems: dict[tuple[str, str | None, str], Finding] = {}
        for result in results:
            summary.merge(result)
            for found in result.problems:  # what belongs to every part is found in each
                problems.setdefault((found.code, found.resource, found.message), found)
        summary.problems = list(problems.values())
        yield from heapq.merge(*(_records(t) for t in targets), key=lambda d: d.position)


def _forked(
    work: _Work, plan: _Plan, parts: int, jobs: int, targets: list[Path]
) -> list[RunSummary]:
    fork = multiprocessing.get_context("fork")
    processes = []
    for first in range(jobs):
        done = targets[first].with_suffix(".done")
        process = fork.Process(target=_child, args=(work, plan, parts, first, jobs, targets, done))
        process.start()
        processes.append((process, done))
    for process, _ in processes:
        process.join()
    results = []
    for number, (process, done) in enumerate(processes, start=1):
        result = _read_result(done)
        if process.exitcode != 0 or result is None:
            raise RuntimeError(f"process {number} of {jobs} stopped: {result or 'no result'}")
        if isinstance(result, tuple):  # what stopped it: its type's name and its message
            kind, message = result
            if kind == "InputError":
                raise InputError(message)
            raise RuntimeError(f"process {number} of {jobs} failed: {kind}: {message}")
        results.append(result)
    return results


def _run_parts(
    work: _Work, plan: _Plan, parts: int, firsts: list[int], step: int,
    targets: list[Path],
) -> RunSummary:  # fmt: skip
    """Decide the parts first, first + step, … of each of `firsts` into their targets."""
    summary = RunSummary()
    for first in firsts:
        for index in range(first, parts, step):
            part = RunSummary()
            with targets[index].open("wb") as out:
                for day in work.part(plan, index, part):
                    pickle.dump(day, out, protocol=pickle.HIGHEST_PROTOCOL)
            summary.merge(part)
    return summary


def _child(
    work: _Work, plan: _Plan, parts: int, first: int, jobs: int, targets: list[Path],
    done: Path,
) -> None:  # fmt: skip
    """In a forked process: decide parts first, first + jobs, …; leave the summary (or what
    stopped it) in `done`."""
    result: RunSummary | tuple[str, str]
    try:
        result = _run_parts(work, plan, parts, [first], jobs, targets)
    except Exception as exc:  # noqa: BLE001 -- reported by the parent, which raises it
        result = (type(exc).__name__, str(exc))
    with done.open("wb") as out:
        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)


def _read_result(path: Path) -> RunSummary | tuple[str, str] | None:
    if not path.exists():
        return None
    with path.open("rb") as handle:
        found: RunSummary | tuple[str, str] = pickle.load(handle)  # our own child's file
    return found


def _records(path: Path) -> Iterator[_DayOutput]:
    if not path.exists():
        return
    with path.open("rb") as handle:
        while True:
            try:
                yield pickle.load(handle)  # our own child's file
            except EOFError:
                return
