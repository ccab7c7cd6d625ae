"""Deleting what a user owns: an account, a portfolio, the user; and an account's credentials.

Everything recorded under the deleted object goes with it, by the foreign keys' ON DELETE CASCADE:
portfolios, accounts, their credentials, schedules, sync runs, snapshots and their holdings,
transactions, and the user's API tokens (an operator's invites keep existing, `created_by` nulled).
Two tables have no foreign key to an account:

- `outbox`: a HoldingsChanged (or CurrentHoldings) of the account the ledger committed but has not
  relayed yet. It is deleted with the account, in the same transaction, before AccountRemoved is
  published: announcing a change after AccountRemoved would bring the account back to a subscriber.
  A relay publishing such a row holds it locked until its delete commits, so this delete waits for
  it, and that change is on the topic before AccountRemoved. (A row deleted here is one the relay
  never publishes.)
- `processed_events`: event ids the ledger applied, with no account or user data in them. They are
  kept: they only make a redelivered event a no-op (and the ledger skips events of a vanished account
  anyway).

Order: in one transaction, the rows to delete are locked (on Postgres, so that no account is added
under them meanwhile and the ledger writes nothing for them), their unrelayed outbox rows deleted,
an `AccountRemoved` for each account published on `holdings.changes` (keyed by the account: after
its HoldingsChanged) with a tombstone on `holdings.current` (after its last CurrentHoldings, for the
same reason), and only then are the rows deleted and the transaction committed.

The tombstone is the API's, not the ledger's, though the ledger writes the account's CurrentHoldings:
only the deletion knows the account is gone, and only it orders the tombstone after the last
CurrentHoldings. Its outbox delete waits for a relay publishing one, and the account rows it holds
locked, then deletes, keep the ledger from committing another (a ledger batch planned on the account
fails its fence or its foreign key, and its outbox rows with it). Written through the ledger's outbox,
it would be the API writing the ledger's table, and that row would have to outlive the account the
outbox rows are deleted with. A failed
publish rolls back: nothing is deleted and the route answers 503. A crash between publish and
commit leaves everything in place; repeating the DELETE republishes AccountRemoved with the same
event id (derived from the account id), which subscribers deduplicate or apply again harmlessly:
forgetting an account twice is forgetting it. (Until then `holdings.current` lacks the account, as
a subscriber that applied AccountRemoved does: the next change of the account writes it again.)
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Delete, Select, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from shared import topics
from shared.bus.port import MessageBus, OutgoingMessage
from shared.db.errors import sqlstate_of
from shared.db.tables import BrokerAccount, Credential, OutboxMessage, Portfolio, User
from shared.events import AccountRemoved

log = logging.getLogger(__name__)


async def remove_account(session: AsyncSession, bus: MessageBus, account_id: uuid.UUID) -> None:
    await _remove(
        session,
        bus,
        BrokerAccount.id == account_id,
        delete(BrokerAccount).where(BrokerAccount.id == account_id),
    )


async def remove_portfolio(session: AsyncSession, bus: MessageBus, portfolio_id: uuid.UUID) -> None:
    await _remove(
        session,
        bus,
        BrokerAccount.portfolio_id == portfolio_id,
        delete(Portfolio).where(Portfolio.id == portfolio_id),
        locks=[select(Portfolio.id).where(Portfolio.id == portfolio_id)],
    )


async def remove_user(session: AsyncSession, bus: MessageBus, user_id: uuid.UUID) -> None:
    await _remove(
        session,
        bus,
        BrokerAccount.portfolio_id.in_(select(Portfolio.id).where(Portfolio.user_id == user_id)),
        delete(User).where(User.id == user_id),
        locks=[
            select(User.id).where(User.id == user_id),
            select(Portfolio.id).where(Portfolio.user_id == user_id),
        ],
    )


async def remove_credentials(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Forget the account's credentials (idempotent). Its syncs then fail as `auth` until new ones
    are set; nothing is announced: subscribers never see credentials."""
    await session.execute(delete(Credential).where(Credential.account_id == account_id))
    await session.commit()


async def _remove(
    session: AsyncSession,
    bus: MessageBus,
    accounts: ColumnElement[bool],
    deletion: Delete,
    *,
    locks: Sequence[Select[uuid.UUID]] = (),
) -> None:
    """`_remove_once`, again when Postgres broke a deadlock by failing it (or a serialization
    failure): the documented remedy. The deletion takes row locks in the foreign keys' order,
    account before schedule, while the scheduler locks a due schedule and then, inserting its sync
    run, the account's key: when both meet, one of them is failed after `deadlock_timeout`. Retried,
    the deletion finds the scheduler's run committed and deletes it too; AccountRemoved is published
    again with the same event id, which the module's docstring says is harmless."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            await _remove_once(session, bus, accounts, deletion, locks=locks)
            return
        except DBAPIError as exc:
            if attempt == _ATTEMPTS or sqlstate_of(exc) not in _RETRIED_SQLSTATES:
                raise
            log.info("removal retried", extra={"sqlstate": sqlstate_of(exc), "attempt": attempt})


_ATTEMPTS = 3
_RETRIED_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


async def _remove_once(
    session: AsyncSession,
    bus: MessageBus,
    accounts: ColumnElement[bool],
    deletion: Delete,
    *,
    locks: Sequence[Select[uuid.UUID]],
) -> None:
    """Announce every account matching `accounts`, then run `deletion`, in one transaction."""
    try:
        # Parents first: a row locked FOR UPDATE keeps new children (accounts, snapshots) out.
        for parent in locks:
            await session.execute(parent.with_for_update())
        rows = (
            await session.execute(
                select(BrokerAccount.id, BrokerAccount.portfolio_id).where(accounts).with_for_update()
            )
        ).all()
        removed = [AccountRemoved.of(account_id=a, portfolio_id=p) for a, p in rows]
        # Before announcing: a relay publishing one of these rows holds it locked, so this waits
        # until that change is on the topic, and AccountRemoved comes after it.
        await _forget_unrelayed(session, [event.account_id for event in removed])
        if removed:
            await bus.publish([message for event in removed for message in _announcements(event)])
        await session.execute(deletion)
        await session.commit()
    except BaseException:
        await session.rollback()
        raise
    for event in removed:
        log.info(
            "account removed", extra={"account_id": str(event.account_id), "event_id": str(event.event_id)}
        )


def _announcements(removed: AccountRemoved) -> tuple[OutgoingMessage, OutgoingMessage]:
    """AccountRemoved for followers of the changes, and the tombstone (an empty value) that deletes
    the account from the compacted `holdings.current`."""
    return (
        OutgoingMessage.of(topics.HOLDINGS_CHANGES, removed),
        OutgoingMessage(topics.HOLDINGS_CURRENT, removed.key, b""),
    )


async def _forget_unrelayed(session: AsyncSession, account_ids: Sequence[uuid.UUID]) -> None:
    if account_ids:
        keys = [str(i) for i in account_ids]
        await session.execute(delete(OutboxMessage).where(OutboxMessage.message_key.in_(keys)))
