"""What a charge outlet without a readable copy of its own (HL7 v2) has delivered: the lines as
last accepted, and every message, recorded before it is sent.

A message is written `pending` with the postings it carries before the first byte goes out;
its ACK settles it in one database transaction with the lines it changes (AA: `accepted`,
the charges stored and the credited lines removed; AE/AR: `refused`, the lines as they were).
A message still pending — its ACK lost, the process stopped — is sent again with the same
control id before anything else of its day (plugin/outlets/hl7v2.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from plugin.store.clock import now
from plugin.store.models import OutletLine, OutletMessage


@dataclass(frozen=True)
class PendingMessage:
    control_id: str
    body: str
    postings: list[dict[str, Any]]
    attempts: int


class OutletStoreMixin:
    sessions: sessionmaker[Session]

    def delivered_lines(self, outlet: str, days: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The lines of these days ("{owner}/{date}") as the receiver last accepted them."""
        with self.sessions.begin() as session:
            rows = session.scalars(
                select(OutletLine).where(OutletLine.outlet == outlet, OutletLine.day.in_(days))
            )
            return {row.key: dict(row.content) for row in rows}

    def pending_messages(self, outlet: str, days: tuple[str, ...]) -> list[PendingMessage]:
        """The messages of these days still waiting for their ACK, oldest first."""
        with self.sessions.begin() as session:
            rows = session.scalars(
                select(OutletMessage)
                .where(
                    OutletMessage.outlet == outlet,
                    OutletMessage.day.in_(days),
                    OutletMessage.state == "pending",
                )
                .order_by(OutletMessage.created_at, OutletMessage.control_id)
            )
            return [
                PendingMessage(
                    r.control_id, r.body, cast(list[dict[str, Any]], r.postings), r.attempts
                )
                for r in rows
            ]

    def record_message(
        self,
        outlet: str,
        day: str,
        control_id: str,
        body: str,
        postings: list[dict[str, Any]],
    ) -> None:
        """A message about to be sent: pending until its ACK."""
        at = now()
        with self.sessions.begin() as session:
            session.add(
                OutletMessage(
                    control_id=control_id,
                    outlet=outlet,
                    day=day,
                    state="pending",
                    body=body,
                    postings=postings,
                    attempts=0,
                    created_at=at,
                    updated_at=at,
                )
            )

    def message_attempted(self, control_id: str) -> None:
        with self.sessions.begin() as session:
            row = session.get(OutletMessage, control_id)
            if row is not None:
                row.attempts += 1
                row.updated_at = now()

    def message_answered(
        self,
        control_id: str,
        accepted: bool,
        answer: str,
        lines: dict[str, dict[str, Any] | None] | None = None,
    ) -> None:
        """Its answer came: accepted (the lines it charged stored, those it credited removed;
        or, given `lines`, each line key's content as stored from now on, None to remove it) or
        refused (nothing of it applied), in one transaction."""
        at = now()
        with self.sessions.begin() as session:
            row = session.get(OutletMessage, control_id)
            if row is None or row.state != "pending":
                return  # settled already (another run sent it again and got its ACK first)
            row.state = "accepted" if accepted else "refused"
            row.answer = answer[:4000]
            row.updated_at = at
            if not accepted:
                return
            postings = cast(list[dict[str, Any]], row.postings)
            if lines is None:
                # a change credits and charges one key: the charge is what stands
                credited = {p["key"]: None for p in postings if p["credit"]}
                lines = credited | {p["key"]: p["content"] for p in postings if not p["credit"]}
            days = {p["key"]: p["day"] for p in postings}
            for key in lines:
                session.execute(
                    delete(OutletLine).where(OutletLine.outlet == row.outlet, OutletLine.key == key)
                )
            session.flush()
            for key, content in lines.items():
                if content is not None:
                    session.add(
                        OutletLine(
                            outlet=row.outlet,
                            key=key,
                            day=days.get(key, row.day),
                            content=content,
                            control_id=control_id,
                            at=at,
                        )
                    )

    def prune_outlet_messages(self, before: datetime) -> int:
        """Delete the messages settled (accepted or refused) before `before`, as the ledger's
        rows are (THERACHARGE_LEDGER_RETENTION_DAYS): their bodies carry PHI. A pending message
        stays until its answer comes; the lines as last accepted stay (a rerun compares with
        them). The number deleted."""
        deleted = 0
        while True:
            with self.sessions.begin() as session:
                ids = list(
                    session.scalars(
                        select(OutletMessage.control_id)
                        .where(OutletMessage.state != "pending", OutletMessage.updated_at < before)
                        .limit(500)
                    )
                )
                if ids:
                    session.execute(delete(OutletMessage).where(OutletMessage.control_id.in_(ids)))
            deleted += len(ids)
            if len(ids) < 500:
                return deleted

    def outlet_messages(self, outlet: str, day: str | None = None) -> list[dict[str, Any]]:
        """The messages sent (newest first), without their bodies: for the admin API."""
        with self.sessions.begin() as session:
            query = select(OutletMessage).where(OutletMessage.outlet == outlet)
            if day is not None:
                query = query.where(OutletMessage.day == day)
            rows = session.scalars(query.order_by(OutletMessage.created_at.desc()).limit(500))
            return [
                {
                    "control_id": r.control_id,
                    "day": r.day,
                    "state": r.state,
                    "attempts": r.attempts,
                    "answer": r.answer,
                    "lines": [
                        {"key": p["key"], "credit": p["credit"]}
                        for p in cast(list[dict[str, Any]], r.postings)
                    ],
                    "created_at": r.created_at.isoformat(),
                }
                for r in rows
            ]
