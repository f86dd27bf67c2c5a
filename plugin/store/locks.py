"""One writer per billing day (docs/deployment.md "No two writers on one day").

On PostgreSQL a billing day is locked with a transaction-level advisory lock on a connection of
its own, held while the day is read, decided and written: every instance and worker sharing the
database waits for the one before it, and a worker killed mid-day loses its connection and with
it the lock. On SQLite (one machine) the lock is a per-process one. Either way the EHR's
conditional writes (If-Match, conditional create) stay the last line of defence: a run that
loses a race reads the day again (plugin.pipeline.billing_day.run_day).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from plugin.deadline import OutOfTime, check

LOCK_WAIT_SECONDS = 120  # longer than any day takes; then the run fails and is retried


def lock_number(key: str) -> int:
    """A billing day's name as PostgreSQL's 64-bit advisory lock key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def exclusive(
    engine: Engine, shared: bool, name: str, wait_seconds: float | None = None
) -> Iterator[None]:
    """One process at a time across every instance (PostgreSQL), for as long as the block
    runs: starting instances migrate the schema and seed the managed tables one after another;
    a billing day is written by one run at a time (DayLocks). `wait_seconds`: give up waiting
    after it (an error), else wait as long as it takes."""
    if not shared:
        yield
        return
    with engine.connect() as connection, connection.begin():
        if wait_seconds is not None:
            milliseconds = max(1, int(wait_seconds * 1000))
            connection.execute(text(f"SET LOCAL lock_timeout = '{milliseconds}ms'"))
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_number(name)})
        yield


class DayLocks:
    def __init__(self, engine: Engine, shared: bool) -> None:
        self.engine = engine
        self.shared = shared
        self._guard = threading.Lock()
        self._local: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """The day's lock for the block; waited for LOCK_WAIT_SECONDS at most, or what is left
        of the request's time budget (plugin.deadline: then OutOfTime, the block never run)."""
        left = check("the billing day's lock")
        wait = LOCK_WAIT_SECONDS if left is None else min(LOCK_WAIT_SECONDS, left)
        if self.shared:
            with ExitStack() as held:
                try:
                    held.enter_context(exclusive(self.engine, True, key, wait))
                except OperationalError as exc:
                    # SQLSTATE 55P03 lock_not_available: lock_timeout ran out
                    if left is not None and getattr(exc.orig, "sqlstate", None) == "55P03":
                        raise OutOfTime("another run held the billing day's lock") from exc
                    raise
                yield
            return
        local = self._enter(key)
        try:
            if not local.acquire(timeout=wait):
                raise OutOfTime("another run held the billing day's lock")
            try:
                yield
            finally:
                local.release()
        finally:
            self._leave(key)

    def _enter(self, key: str) -> threading.Lock:
        with self._guard:
            lock, users = self._local.get(key, (threading.Lock(), 0))
            self._local[key] = (lock, users + 1)
            return lock

    def _leave(self, key: str) -> None:
        with self._guard:
            lock, users = self._local[key]
            if users <= 1:
                del self._local[key]
            else:
                self._local[key] = (lock, users - 1)
