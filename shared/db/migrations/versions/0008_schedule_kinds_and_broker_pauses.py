"""schedule kinds and broker pauses

- `schedules` becomes a resource: `kind` (interval, cron, once), `cron` + `timezone`, `run_at`,
  `start_at` / `end_at`, `last_run_at`, `run_count`. `interval_seconds` is only set for interval
  schedules, and `next_run_at` is None once a schedule will fire no more. Existing rows are
  interval schedules, as they were.
- `broker_pauses`: a broker an operator paused, who did and why.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=8), server_default="interval", nullable=False))
        batch_op.add_column(sa.Column("cron", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("run_at", UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("start_at", UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("end_at", UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_run_at", UtcDateTime(), nullable=True))
        batch_op.add_column(sa.Column("run_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.alter_column("interval_seconds", existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column("next_run_at", existing_type=UtcDateTime(), nullable=True)
    op.create_table(
        "broker_pauses",
        sa.Column("broker", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("paused_by", sa.Uuid(), nullable=True),
        sa.Column("paused_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["paused_by"], ["users.id"], name=op.f("fk_broker_pauses_paused_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("broker", name=op.f("pk_broker_pauses")),
    )


def downgrade() -> None:
    op.drop_table("broker_pauses")
    # The kinds an older version cannot run go: only interval schedules stay, due when they were.
    op.execute("DELETE FROM schedules WHERE kind <> 'interval'")
    op.execute("UPDATE schedules SET next_run_at = CURRENT_TIMESTAMP WHERE next_run_at IS NULL")
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.alter_column("next_run_at", existing_type=UtcDateTime(), nullable=False)
        batch_op.alter_column("interval_seconds", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("run_count")
        batch_op.drop_column("last_run_at")
        batch_op.drop_column("end_at")
        batch_op.drop_column("start_at")
        batch_op.drop_column("run_at")
        batch_op.drop_column("timezone")
        batch_op.drop_column("cron")
        batch_op.drop_column("kind")
