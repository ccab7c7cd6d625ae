"""the ledger's fence on broker_accounts: ledger_version, credentials_changed_at

- `broker_accounts.ledger_version` (ledger): one more on every ledger write; the ledger updates a row
  only where it still holds the version its batch was planned on.
- `broker_accounts.credentials_changed_at` (API): when the user last set credentials, written with
  `needs_reauth = false`; the ledger's update also requires it unchanged, and failures older than it
  leave the account alone. Filled from `credentials.updated_at`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("broker_accounts") as batch:
        batch.add_column(sa.Column("credentials_changed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("ledger_version", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE broker_accounts SET credentials_changed_at = "
        "(SELECT c.updated_at FROM credentials AS c WHERE c.account_id = broker_accounts.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("broker_accounts") as batch:
        batch.drop_column("ledger_version")
        batch.drop_column("credentials_changed_at")
