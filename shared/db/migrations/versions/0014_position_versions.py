"""position_versions and instrument_prices: history that grows with change, not with syncs

A position is stored when it opens or changes, with the time it holds from; an instrument's price
once per move, shared by every account that holds it. A snapshot keeps its own holdings rows only
when it never became the account's positions on arrival (late, held) or a replay corrected it
(`snapshots.holdings_kept`, true for every snapshot stored before: they read as they did).

Existing history is not moved here: this migration only creates the structures (fast, in Alembic's
one transaction) and lists in `history_moves` each account with applied snapshots, with the time of
its newest (`through`). `portfolio-sync db upgrade` then moves that history after the schema
upgrade, a batch of accounts per short transaction, resumably and while the services run
(`shared/db/history_moves.py`). An account not moved yet reads as before, from its snapshots' own
rows (the ledger included).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db.types import ExactDecimal, UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_snapshots = sa.table(
    "snapshots",
    sa.column("account_id", sa.Uuid()),
    sa.column("taken_at", UtcDateTime()),
    sa.column("status", sa.String()),
)
_moves = sa.table("history_moves", sa.column("account_id", sa.Uuid()), sa.column("through", UtcDateTime()))


def upgrade() -> None:
    op.add_column(
        "snapshots", sa.Column("holdings_kept", sa.Boolean(), server_default=sa.true(), nullable=False)
    )
    op.add_column("snapshots", sa.Column("content_hash", sa.LargeBinary(), nullable=True))
    op.create_table(
        "position_versions",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("valid_from", UtcDateTime(), nullable=False),
        sa.Column("isin", sa.String(length=12), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("asset_type", sa.String(length=16), nullable=False),
        sa.Column("quantity", ExactDecimal(), nullable=True),
        sa.Column("average_price", ExactDecimal(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["broker_accounts.id"],
            name="fk_position_versions_account_id_broker_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "symbol", "exchange", "valid_from", name="pk_position_versions"
        ),
    )
    op.create_table(
        "instrument_prices",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("symbol", sa.String(length=64), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("price", ExactDecimal(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instrument_prices"),
    )
    op.create_index(
        "ix_instrument_prices_instrument_at", "instrument_prices", ["symbol", "exchange", "at", "id"]
    )
    op.create_table(
        "history_moves",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("through", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["broker_accounts.id"],
            name="fk_history_moves_account_id_broker_accounts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name="pk_history_moves"),
    )
    applied = (
        sa.select(_snapshots.c.account_id, sa.func.max(_snapshots.c.taken_at))
        .where(_snapshots.c.status == "applied")
        .group_by(_snapshots.c.account_id)
    )
    op.execute(_moves.insert().from_select(["account_id", "through"], applied))


def downgrade() -> None:
    op.drop_table("history_moves")
    op.drop_index("ix_instrument_prices_instrument_at", table_name="instrument_prices")
    op.drop_table("instrument_prices")
    op.drop_table("position_versions")
    op.drop_column("snapshots", "content_hash")
    op.drop_column("snapshots", "holdings_kept")
