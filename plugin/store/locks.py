"""One writer per billing day (docs/deployment.md "No two writers on one day").

On PostgreSQL a billing day is locked with a transaction-level advisory lock on a connection of
its own, held while the day is read, decided and written: every instance and worker sharing the
database waits for the one before it, and a worker killed mid-day loses its connection and with
it the lock. On SQLite (one machine) the lock is a per-process one. Either way the EHR's
conditional writes (If-Match, conditional create) stay the last line of defence: a run that
loses a race reads the day again (plugin.pipeline.billing_day.run_day).
"""

from __future__ import annotations

import fcntl
import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from plugin.deadline import OutOfTime, check

LOCK_WAIT_SECONDS = 120  # longer than any day takes; then the run fails and is retried
LOCK_FILES = 1024  # SQLite: billing days share this many lock files (a day waits for its file)
POLL_SECONDS = 0.01  # how often a waiting SQLite run tries its lock file again


def lock_number(key: str) -> int:
    """A billing day's name as PostgreSQL's 64-bit advisory lock key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def exclusive(
    engine: Engine, shared: bool, name: str, wait_seconds: float | None = None
) -> Iterator[None]:
    """One process at a time across every instance (PostgreSQL; SQLite: every process of the
    machine using the database file), for as long as the block runs: starting instances migrate
    the schema and seed the managed tables one after another; a billing day is written by one
    run at a time (DayLocks). `wait_seconds`: give up waiting after it (an error), else wait as
    long as it takes."""
    if not shared:
        folder = lock_folder(engine)
        if folder is None:
            yield
            return
        with file_lock(folder, name, wait_seconds):
            yield
        return
    with engine.connect() as connection, connection.begin():
        if wait_seconds is not None:
            milliseconds = max(1, int(wait_seconds * 1000))
            connection.execute(text(f"SET LOCAL lock_timeout = '{milliseconds}ms'"))
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_number(name)})
        yield


def lock_folder(engine: Engine) -> Path | None:
    """Where a SQLite database file's locks are kept ("theracharge.db" → "theracharge.db.locks");
    None for an in-memory database."""
    database = engine.url.database
    if engine.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    path = Path(database)
    return path.with_name(path.name + ".locks")


class LockWaitedTooLong(TimeoutError):
    """Another process held the lock for longer than the wait allowed."""


@contextmanager
def file_lock(folder: Path, name: str, wait_seconds: float | None) -> Iterator[None]:
    """An exclusive flock(2) on the lock file `name` falls in, held for the block; released by
    the kernel if the process dies. Every open of the file is a lock of its own, so threads of
    one process exclude one another as processes do."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{lock_number(name) % LOCK_FILES:04d}.lock"
    with open(path, "a+b") as handle:  # a handle to lock, never read
        if wait_seconds is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            until = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= until:
                        raise LockWaitedTooLong(name) from None
                    time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class DayLocks:
    def __init__(self, engine: Engine, shared: bool) -> None:
        self.engine = engine
        self.shared = shared
        self._guard = threading.Lock()
        self._local: dict[str, tuple[threading.Lock, int]] = {}
        self._folder = None if shared else lock_folder(engine)

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
        started = time.monotonic()
        local = self._enter(key)  # this process's threads wait here, without polling a file
        try:
            if not local.acquire(timeout=wait):
                raise OutOfTime("another run held the billing day's lock")
            try:
                with ExitStack() as files:
                    if self._folder is not None:  # then other processes on this machine
                        left_now = max(0.0, wait - (time.monotonic() - started))
                        try:
                            files.enter_context(file_lock(self._folder, key, left_now))
                        except LockWaitedTooLong as exc:
                            raise OutOfTime("another process held the billing day's lock") from exc
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
