"""The tables TheraCharge keeps: audit log, run ledger, received notifications, backfills."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AuditEntry(Base):
    """Who did what to which object, and when (admins, feedback on cards, overrides)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(100), index=True)
    object_id: Mapped[str] = mapped_column(String(200), index=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class RunEntry(Base):
    """Every decision made: the encounter, the trigger, the lines and what was written."""

    __tablename__ = "run_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    encounter_id: Mapped[str] = mapped_column(String(200), index=True)  # the trigger's
    day: Mapped[str | None] = mapped_column(String(300), index=True, nullable=True)
    trigger: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(40))  # written, unchanged, preview, failed
    lines: Mapped[list[object]] = mapped_column(JSON, default=list)
    gaps: Mapped[list[object]] = mapped_column(JSON, default=list)
    written: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    report: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)


class Notification(Base):
    """A FHIR Subscription notification, kept until processed: none is lost if we stop."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("encounter_id", "version", name="uq_notification_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    encounter_id: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[str] = mapped_column(String(100))  # the Encounter's versionId ("" if unknown)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # pending, processing, done, failed (set aside: tried MAX_ATTEMPTS times, or not retryable)
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # "Patient/123|2026-11-02" when the payload named the encounter's patient and date
    day: Mapped[str | None] = mapped_column(String(300), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)  # host:pid
    # last handed to the task queue (THERACHARGE_BROKER_URL); the sweeper re-enqueues from it
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Backfill(Base):
    """`theracharge backfill`: the billing days of a date range decided again, one task each."""

    __tablename__ = "backfills"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(200))
    since: Mapped[str] = mapped_column(String(10))
    until: Mapped[str | None] = mapped_column(String(10), nullable=True)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    days: Mapped[int] = mapped_column(Integer)


class BackfillDay(Base):
    """One billing day of a backfill: queued, decided (outcome, lines held) or failed."""

    __tablename__ = "backfill_days"
    __table_args__ = (UniqueConstraint("backfill_id", "encounter_id", name="uq_backfill_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    backfill_id: Mapped[int] = mapped_column(Integer, index=True)
    encounter_id: Mapped[str] = mapped_column(String(200))  # the day's first listed encounter
    day: Mapped[str | None] = mapped_column(String(300), nullable=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # as Notification.status
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)  # DayRun.outcome
    held: Mapped[int | None] = mapped_column(Integer, nullable=True)  # lines on hold
    lines: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class AccessToken(Base):
    """The EHR's access token (SMART Backend Services), shared by every instance on PostgreSQL
    so that each does not fetch its own. Keyed by a hash of server, client and scopes."""

    __tablename__ = "access_tokens"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    expires: Mapped[float] = mapped_column(Float)  # seconds since the epoch


class SeenToken(Base):
    """JWT ids already accepted (CDS Hooks "Trusting CDS Clients"): a replay is refused."""

    __tablename__ = "seen_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of issuer + jti
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ConfigTable(Base):
    """A table IT admins manage: a code mapping table (ConceptMap) or the payer rule set."""

    __tablename__ = "config_tables"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_config_table"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # mapping, payers
    name: Mapped[str] = mapped_column(String(200))
    current_version: Mapped[int] = mapped_column(Integer)
    deleted: Mapped[bool] = mapped_column(default=False)


class ConfigVersion(Base):
    """Every version of every managed table: who, when, why, what changed, and the content."""

    __tablename__ = "config_versions"
    __table_args__ = (UniqueConstraint("table_id", "version", name="uq_config_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    table_id: Mapped[int] = mapped_column(Integer, index=True)
    version: Mapped[int] = mapped_column(Integer)
    content: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)  # None: deleted
    author: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(Text)
    diff: Mapped[list[object]] = mapped_column(JSON, default=list)


class OutletLine(Base):
    """A charge line as a charge outlet without a readable copy of its own (HL7 v2: the
    billing system keeps it) last delivered it: what the next run compares with, so a rerun
    sends only differences (plugin/outlets)."""

    __tablename__ = "outlet_lines"

    outlet: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(400), primary_key=True)  # the line key
    day: Mapped[str] = mapped_column(String(300), index=True)  # "{owner}/{date}"
    content: Mapped[dict[str, object]] = mapped_column(JSON)
    control_id: Mapped[str] = mapped_column(String(40))  # the message that delivered it
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutletMessage(Base):
    """One message to a billing system, recorded before it is sent: `pending` until its ACK
    (then `accepted` or `refused`); a pending message is sent again, with the same control id,
    before anything else of its day (after a lost ACK or a restart)."""

    __tablename__ = "outlet_messages"

    control_id: Mapped[str] = mapped_column(String(40), primary_key=True)  # MSH-10
    outlet: Mapped[str] = mapped_column(String(40))
    day: Mapped[str] = mapped_column(String(300), index=True)  # "{owner}/{date}"
    state: Mapped[str] = mapped_column(String(20), index=True)  # pending, accepted, refused
    body: Mapped[str] = mapped_column(Text)  # the message as sent (PHI: never logged)
    # [{"key", "day", "credit": bool, "content"}]: what the ACK settles
    postings: Mapped[list[object]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)  # the receiver's words
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
