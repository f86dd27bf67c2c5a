"""TheraCharge's own state (SQLAlchemy 2, Alembic migrations): SQLite by default, PostgreSQL
via THERACHARGE_DATABASE_URL when several instances share state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    CursorResult,
    Engine,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from plugin.store.clock import now
from plugin.store.config import ConfigStoreMixin
from plugin.store.ledger import LedgerWriter
from plugin.store.locks import DayLocks, exclusive
from plugin.store.models import AccessToken, AuditEntry, BackfillDay, Notification, RunEntry
from plugin.store.outlet import OutletStoreMixin
from plugin.store.queue import Claimed as Claimed
from plugin.store.queue import QueueStoreMixin
from plugin.store.replay import ReplayCache

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Built once and executed with parameters: SQLAlchemy caches its compiled form, where
# `insert(...).values(...)` per call re-coerced every value (a third of a hook call).
_RUN_INSERT = insert(cast(Table, RunEntry.__table__))
_NEWEST_FIRST = (RunEntry.at.desc(), RunEntry.id.desc())
PRUNE_EVERY = 600.0  # seconds between two prunings of the ledger, per process
PRUNE_CHUNK = 5000


class Store(ConfigStoreMixin, QueueStoreMixin, OutletStoreMixin):
    """One engine per process; short sessions per operation."""

    def __init__(self, url: str) -> None:
        self.url = url
        database = make_url(url).database
        if url.startswith("sqlite") and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # zero set-up by default
        self.engine: Engine = create_engine(
            url,
            future=True,
            pool_pre_ping=True,
            json_serializer=_json_text,  # orjson: the ledger stores each decision's report
            json_deserializer=orjson.loads,
        )
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.replay = ReplayCache(url, self.engine)
        self.shared = not url.startswith("sqlite")  # PostgreSQL: several instances share it
        self.day_locks = DayLocks(self.engine, self.shared)
        self._ledger: LedgerWriter | None = None
        self.retention: timedelta | None = None  # ledger rows older than this are deleted
        # monotonic time of the last pruning in this process: none yet, so the first write
        # prunes (0.0 would wait until the machine had been up PRUNE_EVERY seconds)
        self._pruned = float("-inf")

    def migrate(self) -> None:
        """Bring the schema to the newest migration (run at start; safe to repeat)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def exclusive(self, name: str) -> AbstractContextManager[None]:
        """Held by one process of every instance at a time (PostgreSQL; SQLite: one machine,
        whose writes SQLite serialises)."""
        return exclusive(self.engine, self.shared, name)

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions.begin() as session:
            yield session

    # --- audit log and run ledger ---------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        object_type: str,
        object_id: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        with self.session() as session:
            session.add(
                AuditEntry(
                    at=now(),
                    actor=actor,
                    action=action,
                    object_type=object_type,
                    object_id=object_id,
                    detail=detail or {},
                )
            )

    def audit_entries(
        self,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: str,
    ) -> list[AuditEntry]:
        """The newest `limit` entries matching `filters`, then those of [since, until] (aware
        times; SQLite keeps UTC without its offset)."""
        with self.session() as session:
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            for name, value in filters.items():
                query = query.where(getattr(AuditEntry, name) == value)
            entries = list(session.scalars(query))
        return [
            e
            for e in entries
            if (since is None or _utc(e.at) >= since) and (until is None or _utc(e.at) <= until)
        ]

    def record_run(
        self,
        encounter_id: str,
        trigger: str,
        outcome: str,
        lines: list[Any],
        gaps: list[Any],
        written: dict[str, Any],
        error: str | None = None,
        report: dict[str, Any] | None = None,
        *,
        day: str | None = None,
        wait: bool = False,
    ) -> None:
        """One ledger row: queued for the batch writer once `defer_ledger` is on, else written
        now. `wait`: written before returning, for a caller whose next request reads it back
        (a page's re-run redirects to the decision page, which another worker may serve)."""
        row = {
            "at": now(),
            "encounter_id": encounter_id,
            "day": day,
            "trigger": trigger,
            "outcome": outcome,
            "lines": lines,
            "gaps": gaps,
            "written": written,
            "error": error,
            "report": report,
        }
        if self._ledger is None:
            self._write_runs([row])
            return
        self._ledger.put(row)
        if wait:
            self._ledger.flush()  # this row and the ones queued before it, in order

    def defer_ledger(self, interval: float = 0.05) -> None:
        """Write ledger rows in batches from a thread (the service: plugin/store/ledger.py)."""
        if self._ledger is None:
            self._ledger = LedgerWriter(self._write_runs, interval)

    def flush_ledger(self) -> None:
        if self._ledger is not None:
            self._ledger.flush()

    def close(self) -> None:
        """Write what is queued and stop the ledger's thread (graceful shutdown)."""
        if self._ledger is not None:
            self._ledger.close()

    def _write_runs(self, rows: list[dict[str, Any]]) -> None:
        """Ledger rows in one transaction (a cached Core insert, executemany: the ORM's unit of
        work per row cost more than the decision itself, bench/bench_hook.py)."""
        with self.engine.begin() as connection:
            connection.execute(_RUN_INSERT, rows)
        if self.retention is not None and time.monotonic() - self._pruned > PRUNE_EVERY:
            self._pruned = time.monotonic()
            self.prune_runs(now() - self.retention)

    def prune_runs(self, before: datetime) -> int:
        """Delete ledger rows decided before `before` (THERACHARGE_LEDGER_RETENTION_DAYS), and
        the background work done before it (notifications, backfill days: the ledger keeps what
        they decided for as long), in chunks so a long backlog never holds the write lock for
        long. The ledger rows deleted."""
        deleted = self._prune(RunEntry, RunEntry.at < before)
        for model in (Notification, BackfillDay):  # set-aside rows stay for an admin
            self._prune(model, (model.status == "done") & (model.finished_at < before))
        self.prune_outlet_messages(before)
        return deleted

    def _prune(self, model: Any, condition: Any) -> int:
        deleted = 0
        while True:
            with self.engine.begin() as connection:
                ids = select(model.id).where(condition).limit(PRUNE_CHUNK)
                result = connection.execute(delete(model).where(model.id.in_(ids)))
                count = cast(CursorResult[Any], result).rowcount
            deleted += count
            if count < PRUNE_CHUNK:
                return deleted

    def latest_runs(self, limit: int = 1000) -> list[RunEntry]:
        """The newest decision of each billing day (the hold worklist's source), whichever of
        its encounters triggered it. Newest by the time it was decided, not by row id: each
        worker writes its rows in batches, so a decision can reach the table after a later one
        from another worker."""
        self.flush_ledger()
        with self.session() as session:
            ranked = select(
                RunEntry.id,
                func.row_number()
                .over(
                    partition_by=func.coalesce(RunEntry.day, RunEntry.encounter_id),
                    order_by=_NEWEST_FIRST,
                )
                .label("rank"),
            ).subquery()
            query = (
                select(RunEntry)
                .join(ranked, RunEntry.id == ranked.c.id)
                .where(ranked.c.rank == 1)
                .order_by(*_NEWEST_FIRST)
                .limit(limit)
            )
            return list(session.scalars(query))

    def runs(self, encounter_id: str | None = None, limit: int = 100) -> list[RunEntry]:
        """Decisions, newest first (by when they were decided). For an encounter: those of
        its billing day (as its newest decision names it), whichever encounter triggered them."""
        self.flush_ledger()
        with self.session() as session:
            query = select(RunEntry).order_by(*_NEWEST_FIRST).limit(limit)
            if encounter_id:
                own = RunEntry.encounter_id == encounter_id
                day = session.scalars(
                    select(RunEntry.day).where(own).order_by(*_NEWEST_FIRST).limit(1)
                ).first()
                query = query.where(own | (RunEntry.day == day) if day else own)
            return list(session.scalars(query))

    # --- JWT replay cache -------------------------------------------------------------------

    def first_use(self, issuer: str, jti: str, expires: datetime) -> bool:
        """True the first time a token id is seen; False for a replay (any worker, any
        instance on the same database; plugin.store.replay)."""
        return self.replay.first_use(issuer, jti, expires)

    # --- notifications: a durable queue ---------------------------------------------------

    def enqueue(self, encounter_id: str, version: str, day: str | None = None) -> int | None:
        """Record a notification: its id, or None when this encounter version is already
        recorded."""
        row = Notification(
            encounter_id=encounter_id,
            version=version,
            received_at=now(),
            status="pending",
            attempts=0,
            day=day,
        )
        try:
            with self.session() as session:
                session.add(row)
        except IntegrityError:
            return None
        return row.id

    # --- the EHR's access token, shared by every instance --------------------------------------

    def shared_token(self, key: str) -> tuple[str, float] | None:
        with self.session() as session:
            row = session.get(AccessToken, key)
            return (row.token, row.expires) if row is not None else None

    def share_token(self, key: str, token: str | None, expires: float = 0.0) -> None:
        """Keep (or, with None, forget) the access token every instance uses (two instances
        storing at once: the first stands)."""
        with suppress(IntegrityError), self.session() as session:
            row = session.get(AccessToken, key)
            if token is None:
                if row is not None:
                    session.delete(row)
            elif row is None:
                session.add(AccessToken(key=key, token=token, expires=expires))
            else:
                row.token, row.expires = token, expires

    def notifications(self, status: str | None = None, limit: int = 1000) -> list[Notification]:
        with self.session() as session:
            query = select(Notification).order_by(Notification.id).limit(limit)
            if status:
                query = query.where(Notification.status == status)
            return list(session.scalars(query))


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    """Several gunicorn workers share one SQLite file: write-ahead log, wait when busy."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL keeps every committed transaction through a process crash (only an OS
    # crash or power loss can drop the last ones) at a fraction of FULL's fsync cost per write.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _utc(value: datetime) -> datetime:
    """When an entry was made: the store keeps UTC (SQLite without its offset)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
