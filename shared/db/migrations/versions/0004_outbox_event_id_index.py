"""outbox: index on event_id

The ledger relays a batch's messages right after committing them and deletes them by event id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 16:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_event_id", "outbox", ["event_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_outbox_event_id", table_name="outbox")
