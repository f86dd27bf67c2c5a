"""Managed tables in the database: every version kept, the current one marked, changes atomic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

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


class StaleVersion(Conflict):
    """The table changed since the version the caller edited (another admin saved first): 409."""


class ConfigStoreMixin:
    """Methods of plugin.store.Store for the managed configuration tables."""

    def session(self) -> Any: ...  # provided by Store

    def config_revision(self) -> int:
        """Grows with every saved version: a cheap way for each worker to see a change."""
        with self.session() as session:
            return int(session.scalar(select(func.max(ConfigVersion.id))) or 0)

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
        versions = self.config_versions(kind, name)
        with self.session() as session:
            table = self._table(session, kind, name)
        if table is None or table.deleted:
            return None
        return next(v for v in versions if v.version == table.current_version)

    def config_save(
        self,
        kind: str,
        name: str,
        content: dict[str, Any] | None,
        author: str,
        reason: str,
        diff: list[Any],
        expect_version: int | None = None,
        at: datetime | None = None,
    ) -> int:
        """Store a new version (content None deletes the table); returns its number.

        `expect_version` guards against lost updates: if the table moved on, StaleVersion.
        """
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
            return version

    @staticmethod
    def _table(session: Any, kind: str, name: str) -> ConfigTable | None:
        found: ConfigTable | None = session.scalars(
            select(ConfigTable).where(ConfigTable.kind == kind, ConfigTable.name == name)
        ).first()
        return found
