"""The as-of reads check the owner in their own statement: another user's account or portfolio reads
as nothing, whatever a route checked before calling them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.api.storage import account_positions, portfolio_positions
from services.ledger.handlers import Ledger
from shared.db.tables import Portfolio
from tests.unit.api.ledger_feed import at, holding, snapshot


@pytest.mark.asyncio
async def test_as_of_positions_are_the_owners_only(
    portfolio_id: str,
    account_id: str,
    ledger: Ledger,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await ledger.apply_batch([snapshot(account_id, at(1), holding("TCS", "10"))])
    account, portfolio = uuid.UUID(account_id), uuid.UUID(portfolio_id)
    async with sessions() as session:
        owner = await session.scalar(select(Portfolio.user_id).where(Portfolio.id == portfolio))
        assert owner is not None
        stranger = uuid.uuid4()

        owned = [
            await account_positions(session, account, owner_id=owner, as_of=at(2)),
            await portfolio_positions(session, portfolio, owner_id=owner, as_of=at(2)),
        ]
        not_owned = [
            await account_positions(session, account, owner_id=stranger, as_of=at(2)),
            await portfolio_positions(session, portfolio, owner_id=stranger, as_of=at(2)),
        ]

    assert [[(p.account_id, p.symbol, p.quantity, p.as_of) for p in read] for read in owned] == [
        [(account, "TCS", 10, at(1))]
    ] * 2
    assert not_owned == [[], []]
