"""The durable side of background work: notifications and backfill days as rows a worker claims.

Every piece of work is a row before it is anything else (docs/deployment.md "Background work"):
a notification is recorded before the EHR gets its 200, a backfill's days before the first is
queued. Whoever executes the work — the in-process worker thread, or a Celery worker when
THERACHARGE_BROKER_URL is set — first claims the row by an atomic compare-and-set, so a task
delivered twice (a redelivery, a sweep, a retry) is done once in effect. A claim older than the
claim timeout belongs to a worker that was killed and is taken again. `enqueued_at` says when
the row was last handed to the broker: the sweeper hands it over again when the broker lost it.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, case, func, insert, select, update
from sqlalchemy.orm import Session

from plugin.store.clock import now
from plugin.store.models import Backfill, BackfillDay, Notification

log = logging.getLogger(__name__)
QueueRow = type[Notification] | type[BackfillDay]
KINDS: dict[str, QueueRow] = {"notification": Notification, "backfill-day": BackfillDay}


@dataclass(frozen=True)
class Claimed:
    id: int
    encounter_id: str
    version: str
    attempts: int
    day: str | None = None  # "Patient/123|2026-11-02", when the notification named it


@dataclass(frozen=True)
class ClaimAnswer:
    """What a claim of one named row came to: the row claimed, or why not and, when the row may
    become claimable (another worker's claim expiring, a retry falling due), in how long."""

    claimed: Claimed | None
    status: str  # claimed, done, failed, busy, not-due, missing
    wait: float = 0.0  # seconds (busy, not-due)


@dataclass(frozen=True)
class DeadLetter:
    kind: str  # notification, backfill-day
    id: int
    key: str  # the encounter (and the day, for a backfill day)
    reason: str
    attempts: int
    first_seen: datetime | None
    last_tried: datetime | None


def _due(model: QueueRow, at: datetime, cutoff: datetime) -> Any:
    """Pending and due, or claimed by a worker that must have stopped (claimed before cutoff)."""
    return (
        (model.status == "pending")
        & (model.next_attempt_at.is_(None) | (model.next_attempt_at <= at))
    ) | ((model.status == "processing") & (model.claimed_at < cutoff))


def _aware(value: datetime | None) -> datetime | None:
    """SQLite gives back the UTC times we stored without their zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _seen(row: Any) -> Claimed:
    return Claimed(
        row.id,
        row.encounter_id,
        getattr(row, "version", ""),
        row.attempts + 1,
        row.day,
    )


def _take(session: Session, model: QueueRow, row: Any, by: str) -> Claimed | None:
    """The compare-and-set: the row moves to processing only if nobody moved it since read."""
    seen = _seen(row)
    result = session.execute(
        update(model)
        .where(model.id == row.id, model.status == row.status, model.attempts == row.attempts)
        .values(status="processing", claimed_at=now(), claimed_by=by, attempts=seen.attempts)
        .execution_options(synchronize_session=False)
    )
    return seen if cast(CursorResult[Any], result).rowcount else None


class QueueStoreMixin:
    """Claiming, finishing, sweeping and reporting queued work (mixed into Store)."""

    def session(self) -> AbstractContextManager[Session]:  # provided by Store
        raise NotImplementedError

    def audit(  # provided by Store
        self,
        actor: str,
        action: str,
        object_type: str,
        object_id: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        raise NotImplementedError

    # --- claiming and finishing ------------------------------------------------------------------

    @contextmanager
    def keep_claim(self, kind: str, row_id: int, by: str, every: float) -> Iterator[None]:
        """While the block runs, the claim is renewed every `every` seconds (a heartbeat), so
        a claim expires only when its worker stopped, however long the work: the claim
        timeout can be short (a crashed worker's work is taken again soon) without another
        worker taking live work away. Renewal only touches a claim still ours."""
        model = KINDS[kind]
        done = threading.Event()

        def beat() -> None:
            while not done.wait(every):
                try:
                    with self.session() as session:
                        session.execute(
                            update(model)
                            .where(
                                model.id == row_id,
                                model.status == "processing",
                                model.claimed_by == by,
                            )
                            .values(claimed_at=now())
                            .execution_options(synchronize_session=False)
                        )
                except Exception:  # noqa: BLE001 -- the database away: the next beat tries again
                    log.warning("could not renew the claim on %s %d", kind, row_id)

        thread = threading.Thread(target=beat, name=f"claim-{kind}-{row_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def release_dead_claims(self, host: str, alive: Callable[[str], bool]) -> int:
        """At a worker's start: the claims held by processes of this host (`claimed_by`
        "host:…") that no longer exist (`alive` says no) are released to be taken again at
        once, instead of after the claim timeout. A compare-and-set on the holder, so a claim
        renewed or taken meanwhile stays. How many were released."""
        released = 0
        for kind, model in KINDS.items():
            with self.session() as session:
                held = session.execute(
                    select(model.id, model.claimed_by).where(
                        model.status == "processing", model.claimed_by.startswith(f"{host}:")
                    )
                ).all()
                for row_id, holder in held:
                    if holder is None or alive(holder):
                        continue
                    result = session.execute(
                        update(model)
                        .where(
                            model.id == row_id,
                            model.status == "processing",
                            model.claimed_by == holder,
                        )
                        .values(status="pending", claimed_at=None, claimed_by=None)
                        .execution_options(synchronize_session=False)
                    )
                    if cast(CursorResult[Any], result).rowcount:
                        released += 1
                        log.info("released %s %d: its worker %s is gone", kind, row_id, holder)
        return released

    def claim(
        self,
        stale_after: timedelta = timedelta(minutes=5),
        by: str = "",
        kind: str = "notification",
    ) -> Claimed | None:
        """Take the oldest due row of a kind (the in-process worker's loop)."""
        model = KINDS[kind]
        at = now()
        with self.session() as session:
            candidates = session.scalars(
                select(model).where(_due(model, at, at - stale_after)).order_by(model.id).limit(5)
            ).all()
            for row in candidates:
                taken = _take(session, model, row, by)
                if taken is not None:
                    return taken
        return None

    def claim_row(self, kind: str, row_id: int, stale_after: timedelta, by: str) -> ClaimAnswer:
        """Take one named row (a task names the row it is for)."""
        model = KINDS[kind]
        at = now()
        with self.session() as session:
            row: Any = session.get(model, row_id)
            if row is None:
                return ClaimAnswer(None, "missing")
            if row.status in ("done", "failed"):
                return ClaimAnswer(None, row.status)
            due, claimed = _aware(row.next_attempt_at), _aware(row.claimed_at)
            if row.status == "pending" and due and due > at:
                return ClaimAnswer(None, "not-due", (due - at).total_seconds())
            if row.status == "processing" and claimed and claimed >= at - stale_after:
                left = (claimed + stale_after - at).total_seconds()
                return ClaimAnswer(None, "busy", max(left, 0.0))
            taken = _take(session, model, row, by)
        return ClaimAnswer(taken, "claimed") if taken else ClaimAnswer(None, "busy", 1.0)

    def finish_row(
        self,
        kind: str,
        row_id: int,
        error: str | None = None,
        retry_at: datetime | None = None,
        **result: Any,
    ) -> None:
        """Done (no error); to be tried again at `retry_at`; else failed: set aside for an admin
        (the dead letters). `result`: a backfill day's outcome, lines and held lines."""
        model = KINDS[kind]
        status = "pending" if retry_at else ("failed" if error else "done")
        with self.session() as session:
            session.execute(
                update(model)
                .where(model.id == row_id)
                .values(
                    status=status,
                    finished_at=now(),
                    last_error=error,
                    next_attempt_at=retry_at,
                    **result,
                )
            )

    def finish(
        self, notification_id: int, error: str | None = None, retry_at: datetime | None = None
    ) -> None:
        self.finish_row("notification", notification_id, error, retry_at)

    # --- the sweeper -----------------------------------------------------------------------------

    def mark_enqueued(self, kind: str, ids: Iterable[int]) -> None:
        model = KINDS[kind]
        wanted = list(ids)
        if not wanted:
            return
        with self.session() as session:
            session.execute(update(model).where(model.id.in_(wanted)).values(enqueued_at=now()))

    def to_sweep(
        self, kind: str, resend_after: timedelta, stale_after: timedelta, limit: int = 500
    ) -> list[int]:
        """Rows recorded and not done that were not handed to the queue in the last
        `resend_after` (the broker lost them, or was down when they came): marked handed over
        now and returned, oldest first, so two sweepers do not both send the same rows."""
        model = KINDS[kind]
        at = now()
        due = _due(model, at, at - stale_after) & (
            model.enqueued_at.is_(None) | (model.enqueued_at < at - resend_after)
        )
        with self.session() as session:
            ids = list(session.scalars(select(model.id).where(due).order_by(model.id).limit(limit)))
            if not ids:
                return []
            result = session.execute(
                update(model)
                .where(model.id.in_(ids), due)
                .values(enqueued_at=at)
                .returning(model.id)
                .execution_options(synchronize_session=False)
            )
            return sorted(int(i) for i in result.scalars())

    # --- backfills -------------------------------------------------------------------------------

    def create_backfill(
        self,
        actor: str,
        since: str,
        until: str | None,
        dry_run: bool,
        days: list[tuple[str, str | None]],
    ) -> tuple[int, list[int]]:
        """A backfill and its days (encounter, day name), all pending; (its id, the days' ids)."""
        with self.session() as session:
            backfill = Backfill(
                created_at=now(),
                actor=actor,
                since=since,
                until=until,
                dry_run=dry_run,
                days=len(days),
            )
            session.add(backfill)
            session.flush()
            if days:
                session.execute(
                    insert(BackfillDay),
                    [
                        {
                            "backfill_id": backfill.id,
                            "encounter_id": encounter,
                            "day": day,
                            "status": "pending",
                            "attempts": 0,
                        }
                        for encounter, day in days
                    ],
                )
            ids = list(
                session.scalars(
                    select(BackfillDay.id)
                    .where(BackfillDay.backfill_id == backfill.id)
                    .order_by(BackfillDay.id)
                )
            )
            return backfill.id, ids

    def backfill(self, backfill_id: int) -> Backfill | None:
        with self.session() as session:
            return session.get(Backfill, backfill_id)

    def backfills(self, limit: int = 50) -> list[Backfill]:
        with self.session() as session:
            return list(session.scalars(select(Backfill).order_by(Backfill.id.desc()).limit(limit)))

    def backfill_pending(self, backfill_id: int) -> list[int]:
        """The days of a backfill not yet done or set aside."""
        with self.session() as session:
            return list(
                session.scalars(
                    select(BackfillDay.id)
                    .where(
                        BackfillDay.backfill_id == backfill_id,
                        BackfillDay.status.in_(("pending", "processing")),
                    )
                    .order_by(BackfillDay.id)
                )
            )

    def backfill_day(self, day_id: int) -> BackfillDay | None:
        with self.session() as session:
            return session.get(BackfillDay, day_id)

    def backfill_progress(self, backfill_id: int) -> dict[str, Any]:
        """Days by status; of those decided, by outcome; days with lines on hold; the failures."""
        with self.session() as session:
            rows = session.execute(
                select(
                    BackfillDay.status,
                    BackfillDay.outcome,
                    func.count(),
                    func.sum(case((BackfillDay.held > 0, 1), else_=0)),
                    func.sum(func.coalesce(BackfillDay.lines, 0)),
                )
                .where(BackfillDay.backfill_id == backfill_id)
                .group_by(BackfillDay.status, BackfillDay.outcome)
            ).all()
            failed = session.execute(
                select(BackfillDay.encounter_id, BackfillDay.last_error)
                .where(BackfillDay.backfill_id == backfill_id, BackfillDay.status == "failed")
                .order_by(BackfillDay.id)
                .limit(100)
            ).all()
        status: Counter[str] = Counter()
        outcome: Counter[str] = Counter()
        held = lines = 0
        for state, result, count, with_held, line_count in rows:
            status[state] += count
            if state == "done":
                outcome[result or "unknown"] += count
                held += int(with_held or 0)
                lines += int(line_count or 0)
        total = sum(status.values())
        return {
            "days": total,
            "finished": status["done"] + status["failed"],
            "status": dict(sorted(status.items())),
            "written": outcome["written"],
            "unchanged": outcome["unchanged"],
            "planned": outcome["planned"],
            "held": held,
            "failed": status["failed"],
            "lines": lines,
            "failures": [{"encounter": e, "reason": r} for e, r in failed],
        }

    # --- the dead letters ------------------------------------------------------------------------

    def dead_letters(self, limit: int = 500) -> list[DeadLetter]:
        """Work set aside after its retries (or at once when trying again could not help),
        newest first: what failed, why, how many attempts."""
        with self.session() as session:
            notes = session.scalars(
                select(Notification)
                .where(Notification.status == "failed")
                .order_by(Notification.finished_at.desc())
                .limit(limit)
            ).all()
            days = session.scalars(
                select(BackfillDay)
                .where(BackfillDay.status == "failed")
                .order_by(BackfillDay.finished_at.desc())
                .limit(limit)
            ).all()
        letters = [
            DeadLetter(
                "notification",
                n.id,
                f"Encounter/{n.encounter_id}",
                n.last_error or "",
                n.attempts,
                n.received_at,
                n.finished_at,
            )
            for n in notes
        ] + [
            DeadLetter(
                "backfill-day",
                d.id,
                f"Encounter/{d.encounter_id}" + (f" ({d.day})" if d.day else ""),
                d.last_error or "",
                d.attempts,
                None,
                d.finished_at,
            )
            for d in days
        ]
        letters.sort(key=lambda d: d.last_tried or now(), reverse=True)
        return letters[:limit]

    def work_counts(self) -> dict[tuple[str, str], int]:
        """Rows of each kind by status (every status named, 0 when none)."""
        counts = {
            (kind, status): 0
            for kind in KINDS
            for status in ("pending", "processing", "done", "failed")
        }
        with self.session() as session:
            for kind, model in KINDS.items():
                for status, count in session.execute(
                    select(model.status, func.count()).group_by(model.status)
                ):
                    counts[(kind, status)] = int(count)
        return counts

    def dead_letter_counts(self) -> dict[str, int]:
        with self.session() as session:
            return {
                kind: int(session.scalar(select(func.count()).where(model.status == "failed")) or 0)
                for kind, model in KINDS.items()
            }

    def retry_row(self, kind: str, row_id: int, actor: str) -> tuple[Any, bool]:
        """A set-aside row back to pending, due now, attempts reset, and who did it audited:
        (the row, None if there is none; whether it was set aside). The caller hands it to the
        queue."""
        model = KINDS[kind]
        with self.session() as session:
            row: Any = session.get(model, row_id)
            if row is None or row.status != "failed":
                return row, False
            row.status, row.attempts, row.next_attempt_at = "pending", 0, None
            row.enqueued_at = None
        self.audit(actor, "retry", kind, str(row_id), {"encounter": row.encounter_id})
        return row, True
