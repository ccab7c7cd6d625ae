"""following one sync: sync_attempts, who requested a run, when its snapshot was announced

- `sync_attempts` (ledger): one row per attempt the fetcher reported (snapshot or failure).
- `sync_runs.requested_by` (the user of a manual sync or an import), `sync_runs.scheduled_for` (the
  tick of a scheduled one).
- `snapshots.announcement_id`, `snapshots.announced_at`: the HoldingsChanged of the snapshot and when
  the outbox relay had it acknowledged; `outbox.snapshot_id` says which snapshot a message announces.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_attempts",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("fetcher_id", sa.String(length=255), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("reported_at", UtcDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("failure_kind", sa.String(length=32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("holdings_count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["sync_runs.id"], name="fk_sync_attempts_run_id_sync_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("event_id", name="pk_sync_attempts"),
    )
    op.create_index("ix_sync_attempts_run", "sync_attempts", ["run_id", "attempt"])
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested_by", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("scheduled_for", UtcDateTime(), nullable=True))
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("announcement_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("announced_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snapshot_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("snapshot_id")
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_column("announced_at")
        batch_op.drop_column("announcement_id")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_column("scheduled_for")
        batch_op.drop_column("requested_by")
    op.drop_index("ix_sync_attempts_run", table_name="sync_attempts")
    op.drop_table("sync_attempts")
