"""`theracharge process --encounter/--since`: the live pipeline from the command line.

Each billing day is a job of the one day-run service (plugin.pipeline.service): it holds the
day's lock while it writes and records its ledger row, as the hook, notifications and
backfills do; `--since` runs the listed days on the local executor, `--jobs` at a time."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from plugin.commands.progress import Progress
from plugin.config.files import Settings
from plugin.errors import UsageError
from plugin.gateway.errors import FhirError
from plugin.gateway.factory import connect
from plugin.pipeline.billing_day import WriteMode, days_between, run_report
from plugin.pipeline.stages import failure_reason
from plugin.render.report import RunSummary, summary_text
from plugin.rules.decision import Decision

if TYPE_CHECKING:  # imported where used: the store and the service bring prometheus_client,
    # which must not be loaded before `serve` sets PROMETHEUS_MULTIPROC_DIR (main.py); the
    # rest of the pipeline these functions use does not bring it and is imported above
    from plugin.pipeline.runtime import Runtime

EXIT_FAILED = 1


def run_live(args: argparse.Namespace, settings: Settings) -> int:
    if args.out or args.report:
        raise UsageError("--out and --report go with --bundle; against an EHR the report is stdout")
    if args.until and not args.since:
        raise UsageError("--until goes with --since")
    from plugin.pipeline.runtime import Runtime

    if args.fhir_base:
        fhir = dataclasses.replace(settings.fhir, base_url=args.fhir_base.rstrip("/"))
        settings = dataclasses.replace(settings, fhir=fhir)
    try:
        connect(settings.fhir)  # names what is missing before the database is opened
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    runtime = Runtime.opened(settings)
    runtime.store.defer_ledger()  # the days' ledger rows written in batches, as `serve` does
    entered = datetime.now().astimezone().replace(microsecond=0)
    # The settings, tables and vocabulary live as long as the run: out of the cyclic
    # collector's way, which otherwise looks through them all again at each full collection
    # (as `serve` does after loading the app; docs/performance.md).
    gc.freeze()
    try:
        if args.encounter:
            return _one(runtime, args.encounter, entered, args.dry_run)
        since, until = args.since.isoformat(), args.until.isoformat() if args.until else None
        workers = args.jobs or runtime.settings.fhir.concurrency
        return _range(runtime, since, until, entered, args.dry_run, workers)
    finally:
        runtime.store.close()  # every ledger row written before the command ends


def _one(runtime: Runtime, encounter: str, entered: datetime, dry: bool) -> int:
    from plugin.pipeline.service import Job, execute

    try:
        run = execute(runtime, Job(encounter, "cli", _mode(dry), entered=entered))
    except Exception as exc:  # noqa: BLE001 -- one line with the reason; failure_reason logs it
        print(f"Encounter/{encounter}: {failure_reason(exc)}", file=sys.stderr)
        return EXIT_FAILED
    body = run_report(run)
    if dry:
        body["would_write"] = run.plan.payload if run.plan else None
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _range(
    runtime: Runtime, since: str, until: str | None, entered: datetime, dry: bool, workers: int
) -> int:
    """The listed days, `workers` at a time (each thread on its own EHR connection), reported
    in the order listed; one failing day never stops the others."""
    from plugin.pipeline.service import Job, day_of, ehr, execute, run_jobs

    try:
        days = days_between(ehr(runtime), since, until)
    except FhirError as exc:
        print(f"listing encounters: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = RunSummary()
    progress = Progress(len(days), "days")
    print(f"configuration: {_versions(runtime.settings)}", file=sys.stderr)
    mode = _mode(dry)

    def decide(listed: dict[str, Any]) -> Decision:
        job = Job(str(listed["id"]), "cli", mode, day=day_of(listed), entered=entered)
        return execute(runtime, job).decision

    for listed, result in run_jobs(days, decide, workers):
        if isinstance(result, Exception):
            summary.failures.append(f"Encounter/{listed['id']}: {failure_reason(result)}")
        else:
            summary.add(result)
        progress.step()
    progress.done()
    print(summary_text(summary), file=sys.stderr)
    for failure in summary.failures:
        print(f"  failed {failure}", file=sys.stderr)
    return EXIT_FAILED if summary.failures else 0


def _versions(settings: Settings) -> str:
    return ", ".join(f"{table} {version}" for table, version in sorted(settings.versions.items()))


def _mode(dry: bool) -> WriteMode:
    return WriteMode.PLAN if dry else WriteMode.WRITE
