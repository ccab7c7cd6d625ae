"""outbox: in_doubt, and an index on (message_key, id)

- `outbox.in_doubt`: a sweep committed this before it tried to publish the row, so a publish may
  have reached Kafka without the delete committing. The batch's own relay (from memory, which never
  looks at the topic) leaves such a row to the sweep, which looks for it on the topic first.
- `ix_outbox_key_id`: a relay publishes an account's row only when no older row of that account is
  still in the outbox, and asks by key and id.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("in_doubt", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_outbox_key_id", "outbox", ["message_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_key_id", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("in_doubt")
