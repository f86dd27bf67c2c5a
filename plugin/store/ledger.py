"""The run ledger's writer: rows queued by requests, written in batches by one thread.

A hook call used to spend a fifth of its time committing its own ledger row, and two gunicorn
workers queued on SQLite's write lock for it (bench/bench_hook.py). Here a request only appends
its row; a thread per process writes what has gathered every `interval` seconds in one
transaction. Reads in the same process flush first, so a page or an API call sees every run
this process decided; another process sees it within `interval`. A graceful stop (gunicorn's
worker exit, `close()`) writes what is left. Only a killed process can lose rows, at most the
last `interval` of them: the ledger is TheraCharge's record of its decisions, while what was
billed is the EHR's ChargeItems, written before the hook answers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

log = logging.getLogger(__name__)
IDLE_SECONDS = 5.0
ROWS = Counter(
    "theracharge_ledger_rows_total", "Ledger rows by what became of them", ["result"]
)  # written, refused (dropped, logged)
WRITE_FAILURES = Counter(
    "theracharge_ledger_write_failures_total", "Ledger batches not written: database away"
)
Row = dict[str, Any]


class LedgerWriter:
    def __init__(
        self,
        write: Callable[[list[Row]], None],
        interval: float = 0.05,
        max_pending: int = 5000,
    ) -> None:
        self._write = write
        self.interval = interval
        self.max_pending = max_pending  # beyond this a request writes the batch itself
        self._pending: list[Row] = []
        self._lock = threading.Lock()  # guards _pending
        self._writing = threading.Lock()  # one batch at a time, in arrival order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.dropped = 0  # rows the database refused (logged)

    def put(self, row: Row) -> None:
        with self._lock:
            self._pending.append(row)
            backlog = len(self._pending)
            # Started on first use in each process (a thread started before gunicorn forks
            # would not exist in the workers) and again after it went idle.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="ledger", daemon=True)
                self._thread.start()
        if backlog >= self.max_pending or self._stop.is_set():
            self.flush()  # the database is slow or down (push back on callers), or we stopped

    def flush(self) -> None:
        """Write every queued row now, in the caller's thread. When the database is away the
        rows stay queued (in order, ahead of newer ones) and the error is raised; a row the
        database refuses is logged and dropped, so it cannot hold back the others."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self._write(batch)
            except Exception as exc:
                if _transient(exc):
                    WRITE_FAILURES.inc()
                    self._requeue(batch)
                    raise
                self._one_by_one(batch)  # a row's fault: find it, write the others
                return
            ROWS.labels("written").inc(len(batch))

    def _one_by_one(self, batch: list[Row]) -> None:
        for index, row in enumerate(batch):
            try:
                self._write([row])
            except Exception as exc:
                if _transient(exc):
                    WRITE_FAILURES.inc()
                    self._requeue(batch[index:])
                    raise
                self.dropped += 1
                ROWS.labels("refused").inc()
                # The error's class and the driver's reason only: SQLAlchemy's message quotes
                # the row.
                log.error(
                    "a ledger row of Encounter/%s was refused and dropped: %s",
                    row.get("encounter_id"),
                    _reason(exc),
                )
                continue
            ROWS.labels("written").inc()

    def _requeue(self, rows: list[Row]) -> None:
        with self._lock:
            self._pending[:0] = rows

    def close(self) -> None:
        """Stop the thread and write what is left (graceful shutdown); rows arriving after
        this are written at once."""
        self._stop.set()
        with self._lock:
            thread = self._thread if self._pid == os.getpid() else None
        if thread is not None:
            thread.join(timeout=10)
        try:
            self.flush()
        except SQLAlchemyError as exc:
            log.error(
                "%d ledger row(s) could not be written at shutdown: %s", self.pending, _reason(exc)
            )

    def _loop(self) -> None:
        idle = 0
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except SQLAlchemyError as exc:  # the database is away: keep the rows, try again
                log.warning(
                    "writing %d ledger row(s) failed, will retry: %s", self.pending, _reason(exc)
                )
                self._stop.wait(min(1.0, self.interval * 20))
                continue
            with self._lock:
                idle = idle + 1 if not self._pending else 0
                if idle * self.interval >= IDLE_SECONDS:  # nothing for a while: let put restart
                    self._thread = None
                    return

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


def _transient(exc: Exception) -> bool:
    """The database is away, locked or dropped the connection: the rows are fine, retry."""
    return isinstance(exc, OperationalError | InterfaceError) or bool(
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def _reason(exc: Exception) -> str:
    """The driver's message, or the error's class: never SQLAlchemy's text, which quotes the
    statement's parameters (the ledger row)."""
    return str(getattr(exc, "orig", None) or type(exc).__name__)
