"""`theracharge process --encounter/--since`: the live pipeline from the command line."""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import orjson

from plugin.commands.progress import Progress
from plugin.config.files import Settings
from plugin.errors import UsageError
from plugin.gateway.errors import FhirError
from plugin.gateway.factory import connect
from plugin.gateway.gather import Gatherer, encounter_patient_and_date
from plugin.pipeline.billing_day import DaySource, WriteMode, days_between, run_day, run_report
from plugin.pipeline.stages import failure_reason
from plugin.render.report import RunSummary, summary_text
from plugin.rules.decision import Decision

EXIT_FAILED = 1


def run_live(args: argparse.Namespace, settings: Settings) -> int:
    if args.out or args.report:
        raise UsageError("--out and --report go with --bundle; against an EHR the report is stdout")
    if args.until and not args.since:
        raise UsageError("--until goes with --since")
    # Imported here: the store brings prometheus_client, which must not be loaded before
    # `serve` sets PROMETHEUS_MULTIPROC_DIR (plugin/commands/main.py).
    from plugin.config.effective import effective_settings

    settings = effective_settings(settings)
    try:
        gatherer = Gatherer(connect(settings.fhir, args.fhir_base))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    entered = datetime.now().astimezone().replace(microsecond=0)
    # The settings, tables and vocabulary live as long as the run: out of the cyclic
    # collector's way, which otherwise looks through them all again at each full collection
    # (as `serve` does after loading the app; docs/performance.md).
    gc.freeze()
    if args.encounter:
        return _one(settings, gatherer, args.encounter, entered, args.dry_run)
    since, until = args.since.isoformat(), args.until.isoformat() if args.until else None
    return _range(
        settings, gatherer, since, until, entered, args.dry_run, args.fhir_base, args.jobs
    )


def _one(
    settings: Settings, gatherer: Gatherer, encounter: str, entered: datetime, dry: bool
) -> int:
    try:
        run = run_day(settings, encounter, DaySource(gatherer), _mode(dry), entered, "cli")
    except Exception as exc:  # noqa: BLE001 -- one line with the reason; failure_reason logs it
        print(f"Encounter/{encounter}: {failure_reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    body = run_report(run)
    if dry:
        body["would_write"] = run.plan.bundle if run.plan else None
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


# A process of its own for fewer days than this costs more (a fork, an EHR connection, a
# token) than it saves.
MIN_DAYS_PER_JOB = 4


def _range(
    settings: Settings,
    gatherer: Gatherer,
    since: str,
    until: str | None,
    entered: datetime,
    dry: bool,
    fhir_base: str | None = None,
    jobs: int = 1,
) -> int:
    try:
        days = days_between(gatherer, since, until)
    except FhirError as exc:
        print(f"listing encounters: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = RunSummary()
    progress = Progress(len(days), "days")
    print(f"configuration: {_versions(settings)}", file=sys.stderr)
    # THERACHARGE_FHIR_CONCURRENCY bounds the days in flight in all: `jobs` processes (each
    # patient's days in one) share it, each deciding its share that many at a time.
    concurrency = min(settings.fhir.concurrency, max(1, len(days)))
    jobs = max(1, min(jobs, concurrency, len(days) // MIN_DAYS_PER_JOB))
    at_once = max(1, concurrency // jobs)
    failures: list[tuple[int, str]] = []
    if jobs == 1:
        decide = _day_decider(settings, entered, dry, gatherer if at_once == 1 else None, fhir_base)
        for index, result in _decided(days, range(len(days)), decide, at_once):
            _count(summary, failures, days, index, result)
            progress.step()
    else:
        print(f"{len(days)} days in {jobs} processes, {at_once} at a time each", file=sys.stderr)
        for totals, failed in _in_processes(settings, days, jobs, at_once, entered, dry, fhir_base):
            summary.merge(totals)
            failures += failed
            progress.step()
    summary.failures = [failure for _, failure in sorted(failures)]  # in the order listed
    progress.done()
    print(summary_text(summary), file=sys.stderr)
    for failure in summary.failures:
        print(f"  failed {failure}", file=sys.stderr)
    return EXIT_FAILED if summary.failures else 0


def _day_decider(
    settings: Settings, entered: datetime, dry: bool, gatherer: Gatherer | None,
    fhir_base: str | None,
) -> Callable[[dict[str, Any]], Decision]:  # fmt: skip
    """Decides one listed day: its encounter names the day, and one search reads it all. With
    no `gatherer` each thread makes its own connection to the EHR (session and token)."""
    local = threading.local()

    def decide_day(listed: dict[str, Any]) -> Decision:
        own = gatherer or getattr(local, "gatherer", None)
        if own is None:
            own = local.gatherer = Gatherer(connect(settings.fhir, fhir_base))
        encounter = str(listed["id"])
        patient, day = encounter_patient_and_date(listed)
        source = DaySource(own, None, (patient, day) if patient and day else None)
        return run_day(settings, encounter, source, _mode(dry), entered, "cli").decision

    return decide_day


def _decided(
    days: list[dict[str, Any]], indices: Iterable[int], decide: Callable[[Any], Decision],
    at_once: int,
) -> Iterator[tuple[int, Decision | Exception]]:  # fmt: skip
    """Each day's decision (or what stopped it), `at_once` days at a time, in the order given;
    one failing day never stops the others."""
    wanted = list(indices)
    if at_once == 1:  # one at a time: in this thread, no hand-off per day
        for index in wanted:
            yield index, _outcome(decide, days[index])
        return
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        futures = [pool.submit(_outcome, decide, days[index]) for index in wanted]
        for index, future in zip(wanted, futures, strict=True):
            yield index, future.result()


def _count(
    summary: RunSummary, failures: list[tuple[int, str]], days: list[dict[str, Any]],
    index: int, result: Decision | Exception,
) -> None:  # fmt: skip
    if isinstance(result, Exception):
        failures.append((index, f"Encounter/{days[index]['id']}: {failure_reason(result)}"))
    else:
        summary.add(result)


def _shares(days: list[dict[str, Any]], jobs: int) -> list[list[int]]:
    """The listed days split among `jobs` processes, each patient's days in one (as `process
    --bundle` splits a file), the patients dealt in the order listed to the least loaded."""
    shares: list[list[int]] = [[] for _ in range(jobs)]
    owner: dict[str | None, int] = {}
    for index, listed in enumerate(days):
        patient = encounter_patient_and_date(listed)[0]
        if patient is None:  # no patient named: the day is its own
            patient = f"#{index}"
        if patient not in owner:
            owner[patient] = min(range(jobs), key=lambda j: len(shares[j]))
        shares[owner[patient]].append(index)
    return shares


def _in_processes(
    settings: Settings, days: list[dict[str, Any]], jobs: int, at_once: int, entered: datetime,
    dry: bool, fhir_base: str | None,
) -> Iterator[tuple[RunSummary, list[tuple[int, str]]]]:  # fmt: skip
    """Decide the days in `jobs` forked processes; each day's totals or failure as it is done.
    A process that ends without reporting a day of its own (killed, out of memory) fails
    that day by name: it may or may not have been written, and a run again settles it."""
    fork = multiprocessing.get_context("fork")
    messages = fork.Queue()
    shares = _shares(days, jobs)
    children = [
        fork.Process(
            target=_child,
            args=(number, settings, days, share, at_once, entered, dry, fhir_base, messages),
        )
        for number, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    left = [set(share) for share in shares]
    while any(left):
        try:
            number, index, totals, failures = messages.get(timeout=1.0)
        except queue.Empty:
            for number, child in enumerate(children):
                if left[number] and child.exitcode is not None:  # gone before reporting them
                    why = (
                        f"process {number + 1} of {jobs} stopped (exit {child.exitcode}) before "
                        "reporting this day; run again to settle it"
                    )
                    for index in sorted(left[number]):
                        yield RunSummary(), [(index, f"Encounter/{days[index]['id']}: {why}")]
                    left[number].clear()
            continue
        left[number].discard(index)
        yield totals, failures
    for child in children:
        child.join()


def _child(
    number: int, settings: Settings, days: list[dict[str, Any]], share: list[int],
    at_once: int, entered: datetime, dry: bool, fhir_base: str | None, messages: Any,
) -> None:  # fmt: skip
    """In a forked process: decide the days of `share` on connections of its own, and report
    each one's totals or failure as it is done."""
    decide = _day_decider(settings, entered, dry, None, fhir_base)
    for index, result in _decided(days, share, decide, at_once):
        totals = RunSummary()
        failures: list[tuple[int, str]] = []
        _count(totals, failures, days, index, result)
        messages.put((number, index, totals, failures))


def _outcome(decide: Callable[[Any], Decision], listed: Any) -> Decision | Exception:
    """A day's decision, or what stopped it (one day never stops the others)."""
    try:
        return decide(listed)
    except Exception as exc:  # noqa: BLE001 -- reported with the day, by the caller
        return exc


def _versions(settings: Settings) -> str:
    return ", ".join(f"{table} {version}" for table, version in sorted(settings.versions.items()))


def _mode(dry: bool) -> WriteMode:
    return WriteMode.PLAN if dry else WriteMode.WRITE
