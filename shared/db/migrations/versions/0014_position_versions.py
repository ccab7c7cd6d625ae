"""position_versions and instrument_prices: history that grows with change, not with syncs

A position is stored when it opens or changes, with the time it holds from; an instrument's price
once per move, shared by every account that holds it. A snapshot keeps its own holdings rows only
when it never became the account's positions on arrival (late, held) or a replay corrected it
(`snapshots.holdings_kept`, true for every snapshot stored before: they read as they did).

Existing history is moved in batches of accounts (memory stays bounded): an account's applied
snapshots become versions and prices and lose their own rows. `move_history` picks only accounts not
moved yet (they have versions after), and an account not moved yet reads as before, from its
snapshots' own rows (the ledger included). The batches run in the migration's one transaction
(shared/db/migrations/env.py): to move a large history while the services run, commit per batch
by calling `move_history` outside Alembic; that is not done here.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from shared.db.types import ExactDecimal, UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

ACCOUNTS_PER_BATCH = 500

_snapshots = sa.table(
    "snapshots",
    sa.column("id", sa.Uuid()),
    sa.column("account_id", sa.Uuid()),
    sa.column("taken_at", UtcDateTime()),
    sa.column("status", sa.String()),
    sa.column("holdings_kept", sa.Boolean()),
)
_holdings = sa.table(
    "snapshot_holdings",
    *(sa.column(n, sa.String()) for n in ("symbol", "exchange", "isin", "currency", "asset_type")),
    *(sa.column(n, ExactDecimal()) for n in ("quantity", "average_price", "last_price")),
    sa.column("snapshot_id", sa.Uuid()),
)
_accounts = sa.table("broker_accounts", sa.column("id", sa.Uuid()), sa.column("broker", sa.String()))
_versions = sa.table(
    "position_versions",
    sa.column("account_id", sa.Uuid()),
    *(sa.column(n, sa.String()) for n in ("symbol", "exchange", "isin", "currency", "asset_type")),
    sa.column("valid_from", UtcDateTime()),
    *(sa.column(n, ExactDecimal()) for n in ("quantity", "average_price")),
)
_prices = sa.table(
    "instrument_prices",
    sa.column("symbol", sa.String()),
    sa.column("exchange", sa.String()),
    sa.column("at", UtcDateTime()),
    sa.column("price", ExactDecimal()),
    sa.column("source", sa.String()),
)


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
    connection = op.get_bind()
    after = move_history(connection, ACCOUNTS_PER_BATCH, after=None)
    while after is not None:
        after = move_history(connection, ACCOUNTS_PER_BATCH, after=after)


def move_history(connection: sa.Connection, accounts: int, *, after: Any) -> Any:
    """Move the applied snapshots of up to `accounts` accounts not moved yet (by id, past `after`)
    into versions and prices; return the last account moved (None: done)."""
    pending = (
        sa.select(_snapshots.c.account_id)
        .where(_snapshots.c.status == "applied", _snapshots.c.holdings_kept)
        .where(~sa.exists().where(_versions.c.account_id == _snapshots.c.account_id))
        .distinct()
        .order_by(_snapshots.c.account_id)
        .limit(accounts)
    )
    if after is not None:
        pending = pending.where(_snapshots.c.account_id > after)
    ids = list(connection.scalars(pending))
    if not ids:
        return None
    brokers = dict(
        connection.execute(sa.select(_accounts.c.id, _accounts.c.broker).where(_accounts.c.id.in_(ids))).all()
    )
    rows = connection.execute(
        sa.select(_snapshots.c.account_id, _snapshots.c.id, _snapshots.c.taken_at, _holdings)
        .join(_holdings, _holdings.c.snapshot_id == _snapshots.c.id, isouter=True)
        .where(_snapshots.c.account_id.in_(ids), _snapshots.c.status == "applied", _snapshots.c.holdings_kept)
        .order_by(_snapshots.c.account_id, _snapshots.c.taken_at, _snapshots.c.id)
    ).mappings()
    versions: list[dict[str, Any]] = []
    prices: list[dict[str, Any]] = []
    moved: list[Any] = []
    for account_id, snapshots in _by_account(rows):
        before: dict[tuple[str, str], dict[str, Any]] = {}
        last_at = None
        for snapshot_id, taken_at, holdings in snapshots:
            if taken_at == last_at:
                continue  # the same time as the one before: it keeps its own rows
            last_at = taken_at
            moved.append(snapshot_id)
            after = {(h["symbol"], h["exchange"]): h for h in holdings}
            for key, h in after.items():
                was = before.get(key)
                if was is None or _terms(was) != _terms(h):
                    versions.append(_version(account_id, taken_at, h, h["quantity"]))
                if was is None or was["last_price"] != h["last_price"]:
                    prices.append(
                        {
                            "symbol": key[0],
                            "exchange": key[1],
                            "at": taken_at,
                            "price": h["last_price"],
                            "source": brokers[account_id],
                        }
                    )
            versions += [
                _version(account_id, taken_at, was, None) for key, was in before.items() if key not in after
            ]
            before = after
    if versions:
        connection.execute(_versions.insert(), versions)
    if prices:
        connection.execute(_prices.insert(), prices)
    for start in range(0, len(moved), 1000):
        chunk = moved[start : start + 1000]
        connection.execute(_holdings.delete().where(_holdings.c.snapshot_id.in_(chunk)))
        connection.execute(_snapshots.update().where(_snapshots.c.id.in_(chunk)).values(holdings_kept=False))
    return ids[-1]


def _by_account(rows: Any) -> Iterator[tuple[Any, list[tuple[Any, Any, list[dict[str, Any]]]]]]:
    account_id = None
    snapshots: list[tuple[Any, Any, list[dict[str, Any]]]] = []
    for row in rows:
        if row["account_id"] != account_id:
            if snapshots:
                yield account_id, snapshots
            account_id, snapshots = row["account_id"], []
        if not snapshots or snapshots[-1][0] != row["id"]:
            snapshots.append((row["id"], row["taken_at"], []))
        if row["symbol"] is not None:
            snapshots[-1][2].append(dict(row))
    if snapshots:
        yield account_id, snapshots


def _terms(h: dict[str, Any]) -> tuple[Any, ...]:
    return (h["quantity"], h["average_price"], h["isin"], h["currency"], h["asset_type"])


def _version(account_id: Any, at: Any, h: dict[str, Any], quantity: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "symbol": h["symbol"],
        "exchange": h["exchange"],
        "valid_from": at,
        "isin": h["isin"],
        "currency": h["currency"],
        "asset_type": h["asset_type"],
        "quantity": quantity,
        "average_price": h["average_price"],
    }


def downgrade() -> None:
    op.drop_index("ix_instrument_prices_instrument_at", table_name="instrument_prices")
    op.drop_table("instrument_prices")
    op.drop_table("position_versions")
    op.drop_column("snapshots", "content_hash")
    op.drop_column("snapshots", "holdings_kept")
