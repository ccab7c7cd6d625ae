"""ledger history, transactions and outbox

Decimal columns widen to NUMERIC(38, 18). Current positions become a pointer into the snapshot history (broker_accounts.current_snapshot_id)
instead of a copy in `positions`; held (suspicious) snapshots, derived and reported transactions,
and the transactional outbox for HoldingsChanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:19:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("message_key", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", shared.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("quantity", shared.db.types.ExactDecimal(), nullable=False),
        sa.Column("price", shared.db.types.ExactDecimal(), nullable=True),
        sa.Column("price_source", sa.String(length=16), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("occurred_at", shared.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("snapshot_id", sa.Uuid(), nullable=True),
        sa.Column("trade_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["broker_accounts.id"],
            name=op.f("fk_transactions_account_id_broker_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("account_id", "trade_id", name="uq_transactions_reported_trade"),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_account_time", ["account_id", "occurred_at"], unique=False)

    with op.batch_alter_table("broker_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("current_snapshot_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("held_snapshot_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("held_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="applied", nullable=False)
        )

    # Every position row of an account names the snapshot it came from: that is the current one.
    # (Older snapshots keep the default status "applied": valid history either way.)
    op.execute(
        "UPDATE broker_accounts SET current_snapshot_id = "
        "(SELECT p.snapshot_id FROM positions p WHERE p.account_id = broker_accounts.id LIMIT 1)"
    )
    op.drop_table("positions")
    if op.get_bind().dialect.name == "postgresql":  # SQLite keeps decimals as text: nothing to widen
        for column in ("quantity", "average_price", "last_price"):
            op.alter_column("snapshot_holdings", column, type_=sa.Numeric(38, 18))


def downgrade() -> None:
    op.create_table(
        "positions",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("isin", sa.String(length=12), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("asset_type", sa.String(length=16), nullable=False),
        sa.Column("quantity", shared.db.types.ExactDecimal(), nullable=False),
        sa.Column("average_price", shared.db.types.ExactDecimal(), nullable=False),
        sa.Column("last_price", shared.db.types.ExactDecimal(), nullable=True),
        sa.Column("as_of", shared.db.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("snapshot_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["broker_accounts.id"],
            name=op.f("fk_positions_account_id_broker_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", "symbol", "exchange", name=op.f("pk_positions")),
    )
    op.execute(
        "INSERT INTO positions (account_id, symbol, exchange, isin, currency, asset_type, quantity, "
        "average_price, last_price, as_of, snapshot_id) "
        "SELECT a.id, h.symbol, h.exchange, h.isin, h.currency, h.asset_type, h.quantity, h.average_price, "
        "h.last_price, a.positions_as_of, h.snapshot_id FROM broker_accounts a "
        "JOIN snapshot_holdings h ON h.snapshot_id = a.current_snapshot_id"
    )
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_column("status")
    with op.batch_alter_table("broker_accounts", schema=None) as batch_op:
        batch_op.drop_column("held_reason")
        batch_op.drop_column("held_snapshot_id")
        batch_op.drop_column("current_snapshot_id")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_account_time")
    op.drop_table("transactions")
    op.drop_table("outbox")
