"""Create owners, portfolios and accounts straight in the database, each with unique names."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.consolidation import Position
from shared.db.tables import (
    BrokerAccount,
    Portfolio,
    Schedule,
    Snapshot,
    SnapshotHolding,
    SnapshotStatus,
    User,
)
from shared.events import utc_now


async def create_account(
    sessions: async_sessionmaker[AsyncSession],
    *,
    broker: str = "sim",
    interval_seconds: int = 3600,
    next_run_at: datetime | None = None,
) -> BrokerAccount:
    unique = uuid.uuid4().hex
    async with sessions.begin() as session:
        user = User(email=f"{unique}@example.test")
        portfolio = Portfolio(name="main")
        session.add(user)
        await session.flush()
        portfolio.user_id = user.id
        session.add(portfolio)
        await session.flush()
        account = BrokerAccount(
            portfolio_id=portfolio.id, broker=broker, label="test", consecutive_failures=0, needs_reauth=False
        )
        session.add(account)
        await session.flush()
        session.add(
            Schedule(
                account_id=account.id,
                interval_seconds=interval_seconds,
                next_run_at=next_run_at or utc_now(),
                enabled=True,
            )
        )
    return account


async def give_current_positions(
    sessions: async_sessionmaker[AsyncSession], positions: list[Position]
) -> None:
    """Make `positions` the accounts' current holdings: one applied snapshot per account."""
    by_account: dict[uuid.UUID, list[Position]] = {}
    for position in positions:
        by_account.setdefault(position.account_id, []).append(position)
    async with sessions.begin() as session:
        for account_id, held in by_account.items():
            snapshot = Snapshot(
                id=uuid.uuid4(),
                account_id=account_id,
                request_id=uuid.uuid4(),
                taken_at=held[0].as_of,
                holdings_count=len(held),
                status=SnapshotStatus.APPLIED,
            )
            session.add(snapshot)
            await session.flush()
            session.add_all(
                SnapshotHolding(
                    snapshot_id=snapshot.id,
                    symbol=p.symbol,
                    exchange=p.exchange,
                    isin=p.isin,
                    currency=p.currency,
                    asset_type=p.asset_type,
                    quantity=p.quantity,
                    average_price=p.average_price,
                    last_price=p.last_price,
                )
                for p in held
            )
            account = await session.get(BrokerAccount, account_id)
            assert account is not None, f"no account {account_id}"
            account.current_snapshot_id = snapshot.id
            account.positions_as_of = snapshot.taken_at
