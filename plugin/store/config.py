"""Managed tables in the database: every version kept, the current one marked, changes atomic."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from plugin.errors import Conflict
from plugin.store.clock import now
from plugin.store.models import ConfigTable, ConfigVersion


@dataclass(frozen=True)
class TableInfo:
    kind: str
    name: str
    version: int
    deleted: bool
    updated: datetime
    author: str


@dataclass(frozen=True)
class VersionInfo:
    version: int
    author: str
    at: datetime
    reason: str
    diff: list[Any]
    content: dict[str, Any] | None


SAVE_ATTEMPTS = 20  # saves at once, each tried again after the one that got in
_REVISION = select(func.max(ConfigVersion.id))  # built once: its compiled form is cached


class StaleVersion(Conflict):
    """The table changed since the version the caller edited (another admin saved first): 409."""


class ConfigStoreMixin:
    """Methods of plugin.store.Store for the managed configuration tables."""

    engine: Any  # provided by Store

    def session(self) -> Any: ...  # provided by Store

    def config_revision(self) -> int:
        """Grows with every saved version: a cheap way for each worker to see a change. Asked
        before every decision, so it is one plain statement on a pooled connection (about a
        fifth of an ORM session's cost)."""
        with self.engine.connect() as connection:
            return int(connection.execute(_REVISION).scalar() or 0)

    def config_tables(self, kind: str, include_deleted: bool = False) -> list[TableInfo]:
        with self.session() as session:
            rows = session.execute(
                select(ConfigTable, ConfigVersion)
                .join(
                    ConfigVersion,
                    (ConfigVersion.table_id == ConfigTable.id)
                    & (ConfigVersion.version == ConfigTable.current_version),
                )
                .where(ConfigTable.kind == kind)
                .order_by(ConfigTable.name)
            ).all()
            return [
                TableInfo(t.kind, t.name, t.current_version, t.deleted, v.at, v.author)
                for t, v in rows
                if include_deleted or not t.deleted
            ]

    def config_versions(self, kind: str, name: str) -> list[VersionInfo]:
        with self.session() as session:
            table = self._table(session, kind, name)
            if table is None:
                return []
            rows = session.scalars(
                select(ConfigVersion)
                .where(ConfigVersion.table_id == table.id)
                .order_by(ConfigVersion.version.desc())
            )
            return [
                VersionInfo(r.version, r.author, r.at, r.reason, list(r.diff), r.content)
                for r in rows
            ]

    def config_current(self, kind: str, name: str) -> VersionInfo | None:
        """The current version of a table (None: no such table, or deleted), read in one
        statement: the table's current number and that version's row cannot come from two
        moments (two reads let a save land between them, and the number name no row read)."""
        with self.session() as session:
            row = session.execute(
                select(ConfigTable.deleted, ConfigVersion)
                .join(
                    ConfigVersion,
                    (ConfigVersion.table_id == ConfigTable.id)
                    & (ConfigVersion.version == ConfigTable.current_version),
                )
                .where(ConfigTable.kind == kind, ConfigTable.name == name)
            ).first()
        if row is None or row[0]:
            return None
        found = row[1]
        return VersionInfo(
            found.version, found.author, found.at, found.reason, list(found.diff), found.content
        )

    def config_save(
        self,
        kind: str,
        name: str,
        content: dict[str, Any] | None,
        author: str,
        reason: str,
        diff: list[Any] | Callable[[dict[str, Any] | None], list[Any]],
        expect_version: int | None = None,
        at: datetime | None = None,
    ) -> int:
        """Store a new version (content None deletes the table); returns its number.

        `expect_version` guards against lost updates: if the table moved on, StaleVersion.
        `diff`: the change, or how to work it out from the content of the version it follows
        (None: none, or deleted) — read in the same transaction as the save, so the recorded
        change is against the version that really precedes it.

        Saves at once (two admins, two instances): the unique (table, version) pair lets one
        of them in; the other's transaction fails and is tried again against the version just
        saved (its diff worked out again) — or, when it named the version it edited
        (If-Match), refused as StaleVersion (409). Never a lost version, never two with one
        number (tests/test_config_freshness.py)."""
        for attempt in range(SAVE_ATTEMPTS):
            try:
                return self._save_once(
                    kind, name, content, author, reason, diff, expect_version, at
                )
            except (IntegrityError, OperationalError):
                if attempt + 1 == SAVE_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0.0, 0.01 * (attempt + 1)))  # apart, not in step
        raise AssertionError("unreachable")  # pragma: no cover

    def _save_once(
        self,
        kind: str,
        name: str,
        content: dict[str, Any] | None,
        author: str,
        reason: str,
        diff: list[Any] | Callable[[dict[str, Any] | None], list[Any]],
        expect_version: int | None,
        at: datetime | None,
    ) -> int:
        with self.session() as session:
            table = self._table(session, kind, name)
            if table is None:
                table = ConfigTable(kind=kind, name=name, current_version=0, deleted=False)
                session.add(table)
                session.flush()
            if expect_version is not None and table.current_version != expect_version:
                raise StaleVersion(
                    f"{kind} {name} is at version {table.current_version}, not {expect_version}"
                )
            if callable(diff):
                previous = session.scalars(
                    select(ConfigVersion.content).where(
                        ConfigVersion.table_id == table.id,
                        ConfigVersion.version == table.current_version,
                    )
                ).first()
                diff = diff(None if table.deleted else previous)
            version = table.current_version + 1
            session.add(
                ConfigVersion(
                    table_id=table.id,
                    version=version,
                    content=content,
                    author=author,
                    at=at or now(),
                    reason=reason,
                    diff=diff,
                )
            )
            table.current_version = version
            table.deleted = content is None
            session.flush()  # the unique (table, version) pair checked here, inside the retry
            return version

    @staticmethod
    def _table(session: Any, kind: str, name: str) -> ConfigTable | None:
        found: ConfigTable | None = session.scalars(
            select(ConfigTable).where(ConfigTable.kind == kind, ConfigTable.name == name)
        ).first()
        return found
