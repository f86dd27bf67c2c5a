"""The billing day: each ledger row names the day it decided (the worklist shows the newest
decision of each day, whichever of its encounters triggered it); a notification keeps the
day its payload named, so the worker reads the day in one search.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_ledger") as batch:
        batch.add_column(sa.Column("day", sa.String(300), nullable=True))
        batch.create_index("ix_run_ledger_day", ["day"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("day", sa.String(300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("day")
    with op.batch_alter_table("run_ledger") as batch:
        batch.drop_index("ix_run_ledger_day")
        batch.drop_column("day")
