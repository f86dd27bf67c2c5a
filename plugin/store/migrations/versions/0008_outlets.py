"""Charge outlets without a readable copy of their own (HL7 v2): the lines last delivered, and
every message recorded before it is sent, so a rerun sends only differences and a message
whose ACK was lost is sent again with the same control id.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outlet_lines",
        sa.Column("outlet", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("day", sa.String(300), nullable=False, index=True),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("control_id", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "outlet_messages",
        sa.Column("control_id", sa.String(40), primary_key=True),
        sa.Column("outlet", sa.String(40), nullable=False),
        sa.Column("day", sa.String(300), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("postings", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outlet_messages")
    op.drop_table("outlet_lines")
