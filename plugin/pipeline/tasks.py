"""The background work itself, whoever executes it (docs/deployment.md "Background work").

Two kinds of work, each a row in the database before it is a task: a notification (an Encounter
changed: decide and write its billing day) and a backfill day (a day of `theracharge backfill`,
decided again). The functions here are the one code path for both ways of executing them: the
in-process worker thread of each web process (the embedded default, no broker), and Celery
workers (THERACHARGE_BROKER_URL; plugin.pipeline.celery_app) — which call these same functions.

Each run claims its row first (a compare-and-set: a task delivered twice is done once), holds
the billing day's lock while it reads, decides and writes (plugin.store.locks), and records how
it ended: done; failed and to be tried again after a growing wait (30 s, then 1, 2, 4 minutes);
or, after MAX_ATTEMPTS or at once when trying again cannot help, set aside for an admin (the
dead letters: GET /admin/api/v1/dead-letters).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from prometheus_client import Counter

from plugin.errors import Invalid
from plugin.gateway.errors import FatalFhirError
from plugin.pipeline.billing_day import DayRun, WriteMode
from plugin.pipeline.runtime import Runtime
from plugin.pipeline.service import Job, execute
from plugin.pipeline.stages import failure_reason
from plugin.rules.lines import LineStatus
from plugin.store import Claimed
from plugin.store.clock import now

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
FIRST_RETRY = timedelta(seconds=30)  # then 1, 2, 4 minutes: about 7.5 minutes in all
# The EHR refused the request, the encounter is gone (gather.NotFound is a FatalFhirError), the
# visit is over the size limit or not valid FHIR: trying again cannot help.
NOT_RETRYABLE = (FatalFhirError, Invalid)
NOTIFICATIONS = Counter(
    "theracharge_notifications_total",
    "Notifications processed: done, retry (failed, will be tried again), set-aside",
    ["result"],
)
TASKS = Counter(
    "theracharge_tasks_total",
    "Background work by kind (notification, backfill-day) and result: done, retry, set-aside, "
    "skipped (already done or taken by another worker)",
    ["kind", "result"],
)


def retry_wait(attempts: int) -> timedelta:
    """How long work that failed `attempts` times waits before the next try."""
    return FIRST_RETRY * (1 << max(0, attempts - 1))


def worker_name() -> str:
    """Who holds a claim: host, process and the process's start (the admin API shows it; a
    fork has its own). The start tells a live process from a later one that reuses the
    number, as a container restarted on the same host does."""
    return _name_of(os.getpid())


@functools.lru_cache(maxsize=4)
def _name_of(pid: int) -> str:
    started = _process_start(pid)
    return f"{socket.gethostname()}:{pid}" + (f"@{started}" if started else "")


def _process_start(pid: int) -> str | None:
    """When a process started, in clock ticks since boot (/proc/PID/stat, field 22, proc(5));
    None where there is no /proc or no such process."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 -- one small read
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # after the command name, which may hold spaces
    return fields[19].decode() if len(fields) > 19 else None


def holder_alive(holder: str) -> bool:
    """Whether the process a claim names (`worker_name()` of this host) still runs."""
    _, _, process = holder.partition(":")
    pid, _, started = process.partition("@")
    if not pid.isdigit():
        return True  # not one of ours: leave it to the claim timeout
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, another user's
    return not started or _process_start(int(pid)) == started


def release_dead_claims(runtime: Runtime) -> int:
    """At start: this host's claims whose processes are gone (a SIGKILL, a crash, a restart of
    the whole service) are taken again now rather than after the claim timeout."""
    return runtime.store.release_dead_claims(socket.gethostname(), holder_alive)


@dataclass(frozen=True)
class TaskResult:
    """How one execution ended: done, retry, set-aside; or, when the row was not claimed,
    skipped (done or set aside already), busy (another worker holds it) or not-due (a retry
    waiting); `wait`: seconds until it may be tried again (retry, busy, not-due)."""

    status: str
    wait: float = 0.0
    run: DayRun | None = None


def process_notification(runtime: Runtime, notification_id: int) -> TaskResult:
    """A notification's task: claim it, decide and write its billing day, record the end."""
    return _claimed(runtime, "notification", notification_id, _notification)


def next_due(runtime: Runtime) -> TaskResult | None:
    """The in-process worker's step: the oldest due notification, else the oldest due backfill
    day (a page's re-run to try again, a backfill whose command stopped), processed; None if
    there is none."""
    stale = claim_timeout(runtime)
    for kind, work in (("notification", _notification), ("backfill-day", _backfill_day)):
        claimed = runtime.store.claim(stale, worker_name(), kind)
        if claimed is not None:
            return _execute(runtime, kind, claimed, work)
    return None


def decide_backfill_day(runtime: Runtime, day_id: int) -> TaskResult:
    """A backfill day's task: claim it, decide its billing day again (and write it, unless the
    backfill is a dry run), record the outcome and the lines held."""
    return _claimed(runtime, "backfill-day", day_id, _backfill_day)


Work = Callable[[Runtime, Claimed], DayRun | None]


def claim_timeout(runtime: Runtime) -> timedelta:
    """A claim older than this is taken again by any worker (its process must have stopped);
    THERACHARGE_NOTIFICATION_CLAIM_SECONDS."""
    return timedelta(seconds=runtime.settings.service.notification_claim_seconds)


def _claimed(runtime: Runtime, kind: str, row_id: int, work: Work) -> TaskResult:
    answer = runtime.store.claim_row(kind, row_id, claim_timeout(runtime), worker_name())
    if answer.claimed is None:
        status = "skipped" if answer.status in ("done", "failed", "missing") else answer.status
        TASKS.labels(kind, "skipped").inc()
        return TaskResult(status, answer.wait)
    return _execute(runtime, kind, answer.claimed, work)


def _execute(runtime: Runtime, kind: str, claimed: Claimed, work: Work) -> TaskResult:
    beat = claim_timeout(runtime).total_seconds() / 3
    try:
        with runtime.store.keep_claim(kind, claimed.id, worker_name(), beat):
            run = work(runtime, claimed)
    except NOT_RETRYABLE as exc:
        return _set_aside(runtime, kind, claimed, failure_reason(exc))
    except Exception as exc:  # noqa: BLE001 -- contained: recorded, retried, set aside
        return _failed(runtime, kind, claimed, failure_reason(exc))
    if kind == "notification":  # a backfill day's result was recorded with it (_backfill_day)
        runtime.store.finish_row(kind, claimed.id)
        NOTIFICATIONS.labels("done").inc()
    TASKS.labels(kind, "done").inc()
    return TaskResult("done", run=run)


def _notification(runtime: Runtime, claimed: Claimed) -> DayRun | None:
    return execute(runtime, Job(claimed.encounter_id, "notification", day=claimed.day))


def _backfill_day(runtime: Runtime, claimed: Claimed) -> DayRun | None:
    day = runtime.store.backfill_day(claimed.id)
    backfill = runtime.store.backfill(day.backfill_id) if day else None
    dry = bool(backfill and backfill.dry_run)
    # a page's re-run is a re-decision run of one day, recorded as its own ("page:<who>")
    actor = backfill.actor if backfill else ""
    job = Job(
        claimed.encounter_id,
        actor if actor.startswith("page:") else "backfill",
        WriteMode.PLAN if dry else WriteMode.WRITE,
        day=claimed.day,
        wait=True,  # on the table before the day is marked done: whoever waits reads it next
    )
    run = execute(runtime, job)
    lines = run.decision.lines
    runtime.store.finish_row(
        "backfill-day",
        claimed.id,
        outcome=run.outcome,
        lines=len(lines),
        held=sum(1 for ln in lines if ln.status is LineStatus.PLANNED),  # held for documentation
    )
    return run


def _failed(runtime: Runtime, kind: str, claimed: Claimed, reason: str) -> TaskResult:
    if claimed.attempts >= MAX_ATTEMPTS:
        return _set_aside(runtime, kind, claimed, f"{reason} (after {claimed.attempts} attempts)")
    wait = retry_wait(claimed.attempts)
    log.warning(
        "%s for Encounter/%s failed (attempt %d of %d), again in %.0f s: %s",
        kind,
        claimed.encounter_id,
        claimed.attempts,
        MAX_ATTEMPTS,
        wait.total_seconds(),
        reason,
    )
    runtime.store.finish_row(kind, claimed.id, reason, retry_at=now() + wait)
    if kind == "notification":
        NOTIFICATIONS.labels("retry").inc()
    TASKS.labels(kind, "retry").inc()
    return TaskResult("retry", wait.total_seconds())


def _set_aside(runtime: Runtime, kind: str, claimed: Claimed, reason: str) -> TaskResult:
    log.warning("%s for Encounter/%s set aside: %s", kind, claimed.encounter_id, reason)
    runtime.store.finish_row(kind, claimed.id, reason)
    if kind == "notification":
        NOTIFICATIONS.labels("set-aside").inc()
    TASKS.labels(kind, "set-aside").inc()
    return TaskResult("set-aside")
