"""Create owners, portfolios and accounts straight in the database, each with unique names."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.tables import BrokerAccount, Portfolio, Schedule, User
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
        user = User(email=f"{unique}@example.test", api_token_hash=unique)
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
