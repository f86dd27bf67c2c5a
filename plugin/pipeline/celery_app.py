"""Background work on Celery with Redis as the broker (THERACHARGE_BROKER_URL).

The tasks are thin: each names a row (a notification, a backfill day) and calls the same
function the in-process worker calls (plugin.pipeline.tasks); the row, not the message, is the
record of the work. What Celery adds is the execution across machines, and this configuration:
- acknowledgement after the work (`task_acks_late`), and a task whose worker process died is
  given back (`task_reject_on_worker_lost`); a worker killed outright leaves its message
  unacknowledged, and Redis hands it out again after the visibility timeout, which is the claim
  timeout (THERACHARGE_NOTIFICATION_CLAIM_SECONDS), when the row's claim has expired too;
- one message at a time per worker thread (`worker_prefetch_multiplier = 1`): a killed worker
  holds no backlog;
- retries through Celery (`Task.retry` with a countdown): the growing wait of
  plugin.pipeline.tasks.retry_wait, or the time left on another worker's claim;
- no result backend: outcomes are in the database (the rows, the run ledger), where every
  instance reads them.
"""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

from celery import Celery, Task, signals

from plugin.config.files import Settings, load_settings
from plugin.pipeline.runtime import Runtime
from plugin.pipeline.tasks import (
    TaskResult,
    decide_backfill_day,
    process_notification,
    release_dead_claims,
)
from plugin.store import Store

log = logging.getLogger(__name__)
TASK_NAMES = {"notification": "theracharge.notification", "backfill-day": "theracharge.day"}
SEND_TIMEOUT = 2.0  # seconds to reach the broker when handing work over; then the sweeper will

app = Celery("theracharge", set_as_current=False)
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


@signals.setup_logging.connect
def _keep_our_logging(**_: Any) -> None:
    """Celery leaves logging as we set it: JSON lines on stderr, as every TheraCharge process
    writes them (`theracharge worker` configures them), never bodies, names or tokens."""


def configure(settings: Settings) -> Celery:
    """Point the app at THERACHARGE_BROKER_URL, with the settings the module docstring gives."""
    service = settings.service
    claim = max(1, int(service.notification_claim_seconds))  # Redis counts whole seconds
    app.conf.update(
        broker_url=service.broker_url,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=SEND_TIMEOUT,
        broker_transport_options={"visibility_timeout": claim},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_channel_error_retry=True,
        # a task running when the broker connection drops finishes and records its end in the
        # database; its message, if the broker kept it, is delivered again and finds it done
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def runtime() -> Runtime:
    """The worker process's runtime, built on first use (after any fork)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.opened(load_settings())
        return _runtime


def use_runtime(given: Runtime | None) -> None:
    """Run the tasks of this process on `given` (`theracharge worker`, tests; None: build
    one from the environment on first use)."""
    global _runtime
    with _runtime_lock:
        _runtime = given


def _execute(task: Task, kind: str, row_id: int, result: TaskResult) -> None:
    if result.status in ("retry", "busy", "not-due"):
        run = runtime()
        run.store.mark_enqueued(kind, [row_id])
        # A worker holds a waiting message unacknowledged; Redis would hand it out again after
        # the visibility timeout (the claim timeout), so no wait is longer than most of it.
        most = 0.8 * run.settings.service.notification_claim_seconds
        raise task.retry(countdown=max(1.0, min(result.wait + 1.0, most)))
    log.info("%s %d: %s", kind, row_id, result.status)


@app.task(name=TASK_NAMES["notification"], bind=True, max_retries=None)
def notification_task(self: Task, notification_id: int) -> None:
    _execute(
        self, "notification", notification_id, process_notification(runtime(), notification_id)
    )


@app.task(name=TASK_NAMES["backfill-day"], bind=True, max_retries=None)
def backfill_day_task(self: Task, day_id: int) -> None:
    _execute(self, "backfill-day", day_id, decide_backfill_day(runtime(), day_id))


class Sender:
    """Hands rows to the queue from a web process or the backfill command. A broker that cannot
    be reached is logged and left to the sweeper: the row is already recorded."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.app = configure(settings)
        self.store = store

    def __call__(self, kind: str, row_id: int) -> bool:
        try:
            self.app.send_task(TASK_NAMES[kind], args=[row_id], retry=False)
        except Exception as exc:  # noqa: BLE001 -- recorded already; the sweeper sends it later
            log.warning("the broker did not take %s %d (%s); the sweeper will", kind, row_id, exc)
            return False
        self.store.mark_enqueued(kind, [row_id])
        return True

    def queued(self) -> int | None:
        """Messages waiting in the broker's default queue (None when it cannot be asked)."""
        try:
            with self.app.connection_for_write() as connection:
                return int(connection.default_channel.client.llen("celery"))
        except Exception:  # noqa: BLE001 -- progress only
            return None


def worker_main(settings: Settings, concurrency: int, name: str) -> Any:
    """`theracharge worker`: a Celery worker in threads (the work waits on the EHR, not the CPU;
    run one worker process per core for more)."""
    runtime = Runtime.opened(settings)
    release_dead_claims(runtime)  # this host's work whose process was killed: taken again now
    use_runtime(runtime)
    configure(settings)
    gc.freeze()  # the settings and tables live as long as the worker (as `serve` does)
    argv = [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        f"--hostname={name}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    return app.worker_main(argv)
