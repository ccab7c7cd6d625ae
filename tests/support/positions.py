"""An account's positions as the API reads them, for tests about the ledger (not about who may see
them): the owner the API's query checks is looked up first."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.storage import Position, account_positions
from shared.db.tables import BrokerAccount, Portfolio


async def positions_of(
    session: AsyncSession, account_id: uuid.UUID, *, as_of: datetime | None = None
) -> list[Position]:
    owner = await session.scalar(
        select(Portfolio.user_id)
        .join(BrokerAccount, BrokerAccount.portfolio_id == Portfolio.id)
        .where(BrokerAccount.id == account_id)
    )
    assert owner is not None, f"no account {account_id}"
    return await account_positions(session, account_id, owner_id=owner, as_of=as_of)
