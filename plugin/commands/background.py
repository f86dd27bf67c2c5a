"""`theracharge backfill` and `theracharge worker`: background work from the command line
(docs/deployment.md "Backfills", "Workers").

A backfill lists the finished encounters of a date range on the EHR, records one row per
billing day (a backfill run in the database), and decides each day again as its own task: on
the Celery workers when THERACHARGE_BROKER_URL is set, else here, THERACHARGE_FHIR_CONCURRENCY
days at a time. Progress is read from the database (every worker records each day's end there)
and the queue; at the end the report says how many days were written, unchanged, held and
failed. Interrupted, the run is kept: `--resume ID` carries on with the days not done.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time
from datetime import date
from typing import TYPE_CHECKING, Any

from plugin.commands.progress import Progress
from plugin.config.files import Settings
from plugin.errors import UsageError

if TYPE_CHECKING:  # imported where used: the store and the tasks bring prometheus_client,
    # which must not be loaded before `serve` sets PROMETHEUS_MULTIPROC_DIR (main.py)
    from plugin.pipeline.runtime import Runtime
    from plugin.store import Store

EXIT_FAILED = 1
POLL_SECONDS = 1.0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="decide every billing day of a date range again (after a payer-rule change)",
        description="List the finished encounters of the range on the EHR, then decide each "
        "billing day again as its own task (Celery workers when THERACHARGE_BROKER_URL is "
        "set, else here). Shows progress; ends with how many days were written, unchanged, "
        "held and failed (exit 1 if any failed).",
    )
    source = backfill.add_mutually_exclusive_group(required=True)
    source.add_argument("--since", metavar="DATE", help="first date of service (YYYY-MM-DD)")
    source.add_argument("--resume", type=int, metavar="ID", help="carry on with backfill ID")
    backfill.add_argument("--until", metavar="DATE", help="last date of service (inclusive)")
    backfill.add_argument("--dry-run", action="store_true", help="decide and plan; write nothing")
    backfill.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="without a broker: decide N days at a time here (1-64, default "
        "THERACHARGE_FHIR_CONCURRENCY)",
    )
    backfill.add_argument(
        "--no-wait", action="store_true", help="queue the days and return (needs a broker)"
    )
    backfill.set_defaults(run=run_backfill)
    worker = commands.add_parser(
        "worker",
        help="a Celery worker for background work (needs THERACHARGE_BROKER_URL)",
        description="Process notifications and backfill days from the queue, in threads "
        "(the work waits on the EHR): run as many as the EHR can serve, on any machine "
        "that reaches the database and the broker.",
    )
    worker.add_argument("--concurrency", type=int, default=4, help="threads (default 4)")
    worker.add_argument(
        "--name", default=f"theracharge@{socket.gethostname()}", help="the worker's name"
    )
    worker.set_defaults(run=run_worker)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.service.broker_url:
        raise UsageError("theracharge worker: set THERACHARGE_BROKER_URL (redis://…)")
    if not 1 <= args.concurrency <= 64:
        raise UsageError("--concurrency: a whole number from 1 to 64")
    from plugin.pipeline.celery_app import worker_main  # Celery only where it is used
    from plugin.web.observability import configure_logging

    configure_logging()  # JSON lines on stderr, as `serve` writes them
    worker_main(settings, args.concurrency, args.name)
    return 0


def run_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from plugin.pipeline.runtime import Runtime

    for name in ("since", "until"):
        value = getattr(args, name)
        if value is not None and not _iso_date(value):
            raise UsageError(f"--{name}: {value!r} is not a date (YYYY-MM-DD)")
    if args.until and not args.since:
        raise UsageError("--until goes with --since")
    if args.since and args.until and args.until < args.since:
        raise UsageError(f"--until: {args.until} is before --since {args.since}")
    if args.jobs is not None and not 1 <= args.jobs <= 64:
        raise UsageError("--jobs: a whole number from 1 to 64")
    if args.no_wait and not settings.service.broker_url:
        raise UsageError("--no-wait needs THERACHARGE_BROKER_URL: without one the days run here")
    if settings.fhir.base_url is None:
        raise UsageError("no EHR: set THERACHARGE_FHIR_BASE_URL")
    runtime = Runtime.opened(settings)
    store = runtime.store
    if args.resume is not None:
        backfill_id, days = _resumed(store, args.resume)
    else:
        created = _create(runtime, args)
        if created is None:
            return EXIT_FAILED
        backfill_id, days = created
    print(f"backfill {backfill_id}: {len(days)} billing day(s) to decide", file=sys.stderr)
    if settings.service.broker_url:
        from plugin.pipeline.celery_app import Sender

        send = Sender(settings, store)
        for day_id in days:
            send("backfill-day", day_id)  # a broker away: the serve instances' sweeper sends
        if args.no_wait:
            print(f"queued; follow it with: theracharge backfill --resume {backfill_id}")
            return 0
        _follow(store, backfill_id, send.queued)
    else:
        workers = args.jobs or settings.fhir.concurrency
        _here(runtime, days, Progress(len(days), "days"), workers)
    return _report(store, backfill_id)


def _create(runtime: Runtime, args: argparse.Namespace) -> tuple[int, list[int]] | None:
    """List the range one date at a time, then record the backfill and its days."""
    from plugin.gateway.errors import FhirError
    from plugin.pipeline.billing_day import days_by_date
    from plugin.pipeline.service import day_of

    gatherer = runtime.gatherer()
    assert gatherer is not None
    since = date.fromisoformat(args.since)
    until = date.fromisoformat(args.until) if args.until else date.today()
    try:
        listed = list(days_by_date(gatherer, since, until))
    except FhirError as exc:
        print(f"listing encounters: {exc}", file=sys.stderr)
        return None
    days = [(str(encounter["id"]), day_of(encounter)) for encounter in listed]
    actor = f"cli:{getpass.getuser()}"
    return runtime.store.create_backfill(
        actor, since.isoformat(), until.isoformat(), args.dry_run, days
    )


def _resumed(store: Store, backfill_id: int) -> tuple[int, list[int]]:
    if store.backfill(backfill_id) is None:
        raise UsageError(f"--resume: no backfill {backfill_id}")
    pending = store.backfill_pending(backfill_id)
    return backfill_id, pending


def _here(runtime: Runtime, days: list[int], progress: Progress, workers: int) -> None:
    """Without a broker: the days decided in this process on the local executor, `workers` at
    a time; a day that failed is tried again after its wait (retries and backoff as on a
    worker)."""
    from plugin.pipeline.service import run_jobs
    from plugin.pipeline.tasks import decide_backfill_day

    def decide(day_id: int) -> None:
        while True:
            result = decide_backfill_day(runtime, day_id)
            if result.status not in ("retry", "busy", "not-due"):
                return
            # a retry waits its turn; a day a serve instance's thread took is looked at again
            # each second until that thread is done with it
            time.sleep(result.wait if result.status != "busy" else min(result.wait, 1.0))

    for _, failed in run_jobs(days, decide, workers):
        if isinstance(failed, Exception):  # the task records its own failures: not one of those
            raise failed
        progress.step()
    progress.done()


def _follow(store: Store, backfill_id: int, queued: Any) -> None:
    """Progress from the database (days finished) and the broker (messages waiting)."""
    state = store.backfill_progress(backfill_id)
    progress = Progress(state["days"], "days")
    last = ""
    while True:
        state = store.backfill_progress(backfill_id)
        progress.count = state["finished"]
        waiting = queued()
        line = f"{state['finished']}/{state['days']} days finished, {state['failed']} failed" + (
            f", {waiting} message(s) waiting in the queue" if waiting is not None else ""
        )
        if progress.enabled:
            print(f"\r{progress.line()} {line}", end="", file=sys.stderr, flush=True)
        elif line != last:
            print(line, file=sys.stderr, flush=True)
        last = line
        if state["finished"] >= state["days"]:
            break
        time.sleep(POLL_SECONDS)
    progress.done()


def _report(store: Store, backfill_id: int) -> int:
    state = store.backfill_progress(backfill_id)
    backfill = store.backfill(backfill_id)
    planned = f"planned {state['planned']} (dry run), " if backfill and backfill.dry_run else ""
    print(
        f"backfill {backfill_id}: {state['days']} billing day(s): written {state['written']}, "
        f"unchanged {state['unchanged']}, {planned}"
        f"held {state['held']} (days with lines held for documentation), "
        f"failed {state['failed']}"
    )
    for failure in state["failures"]:
        print(f"  failed Encounter/{failure['encounter']}: {failure['reason']}")
    return EXIT_FAILED if state["failed"] else 0


def _iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10
