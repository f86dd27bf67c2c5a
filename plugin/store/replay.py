"""The JWT replay cache: each (issuer, jti) accepted once, by any worker of any instance sharing
the database (CDS Hooks 2.0 "Trusting CDS Clients": a `jti` must not be reused).

One row per accepted token in `seen_tokens`, which every worker and instance reads: a second
use of a token id finds its row and is refused, whichever process sees it. What a row costs is
kept off the request's critical path:
- SQLite (one machine): a plain `INSERT OR IGNORE` on the process's own connection, in
  autocommit, with `synchronous=OFF` on that connection — the database file is shared with the
  other workers through SQLite's locking, and no commit waits for the disk. An operating-system
  crash could forget the last accepted ids; a token lives at most 5 minutes
  (plugin.web.cds_auth.MAX_LIFETIME), so a replay window opens only across such a crash.
- PostgreSQL (several instances): `INSERT … ON CONFLICT DO NOTHING` with
  `synchronous_commit = off` for that transaction — the row is visible to every instance at
  once, and the commit does not wait for the write-ahead log to reach the disk.
Expired rows are deleted at most once a minute per process, not on every call.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from plugin.store.clock import now

PURGE_SECONDS = 60.0
# Two workers writing the replay table at once: one waits for the other's insert (tens of
# microseconds). SQLite's own busy handler sleeps a whole millisecond and more before trying
# again — measured with two processes inserting at a hook's pace: mean 112 µs, p99 1.2 ms — so
# the connection has none and a locked insert is tried again after BUSY_PAUSE (mean 43 µs,
# p99 0.2 ms), for up to BUSY_SECONDS as the busy handler's timeout did.
BUSY_PAUSE = 0.00005
BUSY_SECONDS = 10.0
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy writes a DateTime in SQLite


class ReplayCache:
    """`first_use(issuer, jti, expires)`: True the first time, False for a replay."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.engine = engine
        self._purged = 0.0
        self._local = threading.local()
        database = make_url(url).database
        self._sqlite = url.startswith("sqlite")
        self._path = database if self._sqlite and database and database != ":memory:" else None

    def first_use(self, issuer: str, jti: str, expires: datetime) -> bool:
        key = hashlib.sha256(f"{issuer}|{jti}".encode()).hexdigest()
        purge = time.monotonic() - self._purged > PURGE_SECONDS
        if purge:
            self._purged = time.monotonic()
        if self._path is not None:
            return self._sqlite_first_use(key, expires, purge)
        return self._engine_first_use(key, expires, purge)

    def _sqlite_first_use(self, key: str, expires: datetime, purge: bool) -> bool:
        connection = self._connection()
        if purge:
            _write(
                connection,
                "DELETE FROM seen_tokens WHERE expires < ?",
                (now().strftime(_SQLITE_TIME),),
            )
        cursor = _write(
            connection,
            "INSERT OR IGNORE INTO seen_tokens (jti, expires) VALUES (?, ?)",
            (key, expires.strftime(_SQLITE_TIME)),
        )
        return cursor.rowcount == 1

    def _connection(self) -> sqlite3.Connection:
        """This thread's own connection (sqlite3 connections are not shared across threads)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            assert self._path is not None
            # no busy handler: a locked write is tried again by _write, without its sleeps
            connection = sqlite3.connect(Path(self._path), isolation_level=None, timeout=0.0)
            _write(connection, "PRAGMA journal_mode=WAL", ())
            connection.execute("PRAGMA synchronous=OFF")  # this connection's own setting
            self._local.connection = connection
        return connection

    def _engine_first_use(self, key: str, expires: datetime, purge: bool) -> bool:
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
            if purge:
                connection.execute(
                    text("DELETE FROM seen_tokens WHERE expires < :now"), {"now": now()}
                )
            conflict = (
                "ON CONFLICT (jti) DO NOTHING"
                if self.engine.dialect.name in ("postgresql", "sqlite")
                else ""
            )
            result = connection.execute(
                text(f"INSERT INTO seen_tokens (jti, expires) VALUES (:jti, :expires) {conflict}"),
                {"jti": key, "expires": expires},
            )
            return result.rowcount == 1


def _write(
    connection: sqlite3.Connection, statement: str, parameters: tuple[str, ...]
) -> sqlite3.Cursor:
    """Run a write, trying again while another connection holds the write lock (BUSY_PAUSE)."""
    deadline: float | None = None
    while True:
        try:
            return connection.execute(statement, parameters)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            moment = time.monotonic()
            if deadline is None:
                deadline = moment + BUSY_SECONDS
            elif moment > deadline:
                raise
            time.sleep(BUSY_PAUSE)
