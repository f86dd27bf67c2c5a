"""The whole decision report on each ledger row, for the decision page.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_ledger") as batch:
        batch.add_column(sa.Column("report", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_ledger") as batch:
        batch.drop_column("report")
