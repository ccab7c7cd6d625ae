"""Partial updates of what a user owns: a portfolio's name and `active`, an account's label.

Each function commits: it is a whole transaction. The caller has checked ownership (the object
came from `storage.owned_*`, in the same session). None means "leave as it is".
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.storage import AlreadyExists
from shared.db.tables import BrokerAccount, Portfolio


async def update_portfolio(
    session: AsyncSession, portfolio: Portfolio, *, name: str | None, active: bool | None
) -> Portfolio:
    if name is not None:
        portfolio.name = name
    if active is not None:
        portfolio.active = active
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise AlreadyExists(f"you already have a portfolio named {name!r}") from None
    await session.refresh(portfolio)
    return portfolio


async def update_account(session: AsyncSession, account: BrokerAccount, *, label: str | None) -> None:
    if label is not None:
        account.label = label
    await session.commit()
