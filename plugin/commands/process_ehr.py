"""`theracharge process --encounter/--since`: the live pipeline from the command line."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterable
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
    if args.encounter:
        return _one(settings, gatherer, args.encounter, entered, args.dry_run)
    since, until = args.since.isoformat(), args.until.isoformat() if args.until else None
    return _range(settings, gatherer, since, until, entered, args.dry_run, args.fhir_base)


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


def _range(
    settings: Settings,
    gatherer: Gatherer,
    since: str,
    until: str | None,
    entered: datetime,
    dry: bool,
    fhir_base: str | None = None,
) -> int:
    try:
        days = days_between(gatherer, since, until)
    except FhirError as exc:
        print(f"listing encounters: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = RunSummary()
    progress = Progress(len(days), "days")
    print(f"configuration: {_versions(settings)}", file=sys.stderr)
    workers = min(settings.fhir.concurrency, max(1, len(days)))
    local = threading.local()

    def decide_day(listed: dict[str, Any]) -> Decision:
        # The listed encounter names its day: one search reads the whole day. Each thread has
        # its own connection to the EHR (its own session and token).
        if workers == 1:
            own = gatherer
        else:
            own = getattr(local, "gatherer", None) or Gatherer(connect(settings.fhir, fhir_base))
            local.gatherer = own
        encounter = str(listed["id"])
        patient, day = encounter_patient_and_date(listed)
        source = DaySource(own, None, (patient, day) if patient and day else None)
        return run_day(settings, encounter, source, _mode(dry), entered, "cli").decision

    # Days are decided `workers` at a time (THERACHARGE_FHIR_CONCURRENCY) and reported in the
    # order listed; one failing day never stops the others.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if workers == 1:  # one at a time: in this thread, no hand-off per day
            results: Iterable[Any] = (_outcome(decide_day, listed) for listed in days)
        else:
            futures = [pool.submit(_outcome, decide_day, listed) for listed in days]
            results = (future.result() for future in futures)
        for listed, result in zip(days, results, strict=True):
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
