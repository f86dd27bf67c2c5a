"""Past one machine (docs/deployment.md): who holds a notification and when it was last handed
to the task queue (the sweeper re-enqueues what the broker lost); backfill runs, one row per
billing day they decide; the EHR access token shared by every instance.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(200), nullable=True))
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "backfills",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("since", sa.String(10), nullable=False),
        sa.Column("until", sa.String(10), nullable=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("days", sa.Integer, nullable=False),
    )
    op.create_table(
        "backfill_days",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("backfill_id", sa.Integer, nullable=False, index=True),
        sa.Column("encounter_id", sa.String(200), nullable=False),
        sa.Column("day", sa.String(300), nullable=True),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("held", sa.Integer, nullable=True),
        sa.Column("lines", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.UniqueConstraint("backfill_id", "encounter_id", name="uq_backfill_day"),
    )
    op.create_table(
        "access_tokens",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("access_tokens")
    op.drop_table("backfill_days")
    op.drop_table("backfills")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("enqueued_at")
        batch.drop_column("claimed_by")
