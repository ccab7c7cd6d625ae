"""The API benchmark's database, bulk-loaded with COPY: users with one portfolio of accounts each,
every account with successive applied snapshots of 20 holdings and a transaction per snapshot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from services.api.storage_users import new_secret, secret_hash
from services.ledger.plan import BatchPlan
from shared.events import utc_now

HOLDINGS = 20


@dataclass(frozen=True)
class Portfolio:
    id: uuid.UUID
    token: str
    accounts: list[uuid.UUID]


@dataclass(frozen=True)
class Loaded:
    portfolios: list[Portfolio]
    first_taken_at: datetime
    last_taken_at: datetime


async def load(url: str, *, accounts: int, per_portfolio: int, snapshots: int) -> Loaded:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    now = utc_now()
    first = now - timedelta(hours=snapshots)
    portfolios: list[Portfolio] = []
    try:
        users, tokens, rows = [], [], []
        for _ in range(accounts // per_portfolio):
            user_id, portfolio_id, secret = uuid.uuid4(), uuid.uuid4(), new_secret()
            users.append((user_id, f"bench-{user_id.hex}@example.test", "user", now))
            tokens.append((uuid.uuid4(), user_id, "default", secret_hash(secret), "read", now))
            rows.append((portfolio_id, user_id, "bench", now))
            portfolios.append(Portfolio(portfolio_id, secret, [uuid.uuid4() for _ in range(per_portfolio)]))
        await conn.copy_records_to_table(
            "users", records=users, columns=["id", "email", "role", "created_at"]
        )
        await conn.copy_records_to_table(
            "api_tokens",
            records=tokens,
            columns=["id", "user_id", "name", "token_hash", "scope", "created_at"],
        )
        await conn.copy_records_to_table(
            "portfolios", records=rows, columns=["id", "user_id", "name", "created_at"]
        )
        for portfolio in portfolios:
            await _load_portfolio(conn, portfolio, snapshots=snapshots, first=first)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return Loaded(portfolios, first, first + timedelta(hours=snapshots - 1))


async def _load_portfolio(
    conn: asyncpg.Connection, portfolio: Portfolio, *, snapshots: int, first: datetime
) -> None:
    accounts, snaps, holdings, trades = [], [], [], []
    for account_id in portfolio.accounts:
        current = None
        for n in range(snapshots):
            taken = first + timedelta(hours=n)
            current = uuid.uuid4()
            snaps.append((current, account_id, uuid.uuid4(), taken, taken, HOLDINGS, "applied"))
            for i in range(HOLDINGS):
                quantity = Decimal(100 + (n if i == n % HOLDINGS else 0))
                holdings.append(
                    (
                        current,
                        f"SYM{i:02d}",
                        "NSE",
                        f"INE{i:03d}A01020",
                        "INR",
                        "equity",
                        quantity,
                        Decimal("1234.5678"),
                        Decimal("1240.10") + n,
                    )
                )
            trades.append(
                (
                    uuid.uuid4(),
                    account_id,
                    f"SYM{n % HOLDINGS:02d}",
                    "NSE",
                    "buy",
                    Decimal(1),
                    Decimal("1240.10"),
                    "last_price",
                    "INR",
                    taken,
                    "derived",
                    current,
                )
            )
        accounts.append(
            (
                account_id,
                portfolio.id,
                "sim",
                "bench",
                first,
                current,
                first + timedelta(hours=snapshots - 1),
                0,
                False,
            )
        )
    await conn.copy_records_to_table(
        "broker_accounts",
        records=accounts,
        columns=[
            "id",
            "portfolio_id",
            "broker",
            "label",
            "created_at",
            "current_snapshot_id",
            "positions_as_of",
            "consecutive_failures",
            "needs_reauth",
        ],
    )
    await conn.copy_records_to_table(
        "snapshots",
        records=snaps,
        columns=["id", "account_id", "request_id", "taken_at", "received_at", "holdings_count", "status"],
    )
    await conn.copy_records_to_table(
        "snapshot_holdings",
        records=holdings,
        columns=list(BatchPlan.HOLDING_COLUMNS),
    )
    await conn.copy_records_to_table(
        "transactions",
        records=trades,
        columns=[
            "id",
            "account_id",
            "symbol",
            "exchange",
            "kind",
            "quantity",
            "price",
            "price_source",
            "currency",
            "occurred_at",
            "origin",
            "snapshot_id",
        ],
    )
