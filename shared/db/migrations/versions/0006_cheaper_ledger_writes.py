"""cheaper ledger writes: reported trades unique by a partial index; accounts updated in place

- `uq_transactions_reported_trade` becomes a unique index over reported trades only (`trade_id IS
  NOT NULL`): derived transactions, most of them, have no trade id and no longer pay for an entry.
- `broker_accounts` leaves half of each page free (Postgres only): the ledger updates every synced
  account's status once a batch, and with room on the page such an update is a HOT update, which
  touches no index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_REPORTED = sa.text("trade_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_transactions_reported_trade", type_="unique")
    op.create_index(
        "uq_transactions_reported_trade",
        "transactions",
        ["account_id", "trade_id"],
        unique=True,
        postgresql_where=_REPORTED,
        sqlite_where=_REPORTED,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE broker_accounts SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE broker_accounts RESET (fillfactor)")
    op.drop_index("uq_transactions_reported_trade", table_name="transactions")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_transactions_reported_trade", ["account_id", "trade_id"])
