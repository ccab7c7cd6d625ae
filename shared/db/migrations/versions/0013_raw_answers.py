"""raw_answers: each sync's broker answer, kept by the fetcher for replay

The fetcher's first table (and its first database access): the answer's body as received, headers
left out and credential values blanked, zlib-compressed; pruned after RAW_ARCHIVE_RETENTION_DAYS,
and deleted with its account.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raw_answers",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("broker", sa.String(length=32), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["broker_accounts.id"],
            name="fk_raw_answers_account_id_broker_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "attempt", name="pk_raw_answers"),
    )
    op.create_index("ix_raw_answers_account_received", "raw_answers", ["account_id", "received_at"])
    op.create_index("ix_raw_answers_received", "raw_answers", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_raw_answers_received", table_name="raw_answers")
    op.drop_index("ix_raw_answers_account_received", table_name="raw_answers")
    op.drop_table("raw_answers")
