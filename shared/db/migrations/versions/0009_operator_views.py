"""operator views: stuck runs re-requested, run indexes, dead-letter replays

- `sync_runs.rerequested_at`: when a stuck run was last requested again.
- indexes on `sync_runs` (status, requested_at) and (finished_at), for the operator's lists and
  per-broker counts.
- `dead_letter_replays`: each dead letter replayed, so that none is replayed twice.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerequested_at", UtcDateTime(), nullable=True))
    op.create_index("ix_sync_runs_status_requested", "sync_runs", ["status", "requested_at"])
    op.create_index("ix_sync_runs_finished", "sync_runs", ["finished_at"])
    op.create_table(
        "dead_letter_replays",
        sa.Column("dlq_topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("replayed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("dlq_topic", "partition", "offset", name=op.f("pk_dead_letter_replays")),
    )


def downgrade() -> None:
    op.drop_table("dead_letter_replays")
    op.drop_index("ix_sync_runs_finished", table_name="sync_runs")
    op.drop_index("ix_sync_runs_status_requested", table_name="sync_runs")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_column("rerequested_at")
