"""Re-encrypt every stored credential under the newest key, so that older keys can be retired.

`credentials` is the API's table; this operator task changes one column of it, the ciphertext, and
fences every write on the ciphertext it read: a `PUT credentials` that lands meanwhile wins, and is
never overwritten with the older credentials. A credential the newest key alone opens is left as
it is, which is what makes a run resumable: an interrupted run's finished batches are skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.credentials import CredentialCipher, CredentialsUnreadable
from shared.db.tables import Credential

DEFAULT_BATCH_SIZE = 500


@dataclass
class RotationReport:
    """What a run did: `done` of `total` looked at so far, and how each one ended."""

    total: int
    done: int = 0
    rotated: int = 0
    already_current: int = 0
    replaced_meanwhile: int = 0  # new credentials were stored while this run had the old ones
    unreadable: list[uuid.UUID] = field(default_factory=list)  # no configured key opens them


ProgressCallback = Callable[[RotationReport], None]


async def rotate_credentials(
    sessions: async_sessionmaker[AsyncSession],
    cipher: CredentialCipher,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: ProgressCallback | None = None,
) -> RotationReport:
    """Re-encrypt every credential under the cipher's newest key, one committed batch at a time,
    in account id order; `on_batch` is called after each commit."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    async with sessions() as session:
        report = RotationReport(total=await session.scalar(select(func.count()).select_from(Credential)) or 0)
    after: uuid.UUID | None = None
    while True:
        async with sessions() as session:
            query = select(Credential.account_id, Credential.ciphertext).order_by(Credential.account_id)
            if after is not None:
                query = query.where(Credential.account_id > after)
            batch = (await session.execute(query.limit(batch_size))).all()
            if not batch:
                return report
            for account_id, ciphertext in batch:
                await rotate_credential(session, cipher, report, account_id, ciphertext)
            await session.commit()
        after = batch[-1].account_id
        # Credentials stored after the count was taken can make done exceed it: keep the total honest.
        report.done += len(batch)
        report.total = max(report.total, report.done)
        if on_batch is not None:
            on_batch(report)


async def rotate_credential(
    session: AsyncSession, cipher: CredentialCipher, report: RotationReport, account_id: uuid.UUID, old: str
) -> None:
    """Re-encrypt the account's credentials, read as `old`, unless they changed since (not committed)."""
    if cipher.is_current(old):
        report.already_current += 1
        return
    try:
        new = cipher.rotate(old)
    except CredentialsUnreadable:
        report.unreadable.append(account_id)
        return
    # The compare on the old ciphertext: an API write since the read is kept, not overwritten.
    result = await session.execute(
        update(Credential)
        .where(Credential.account_id == account_id, Credential.ciphertext == old)
        .values(ciphertext=new)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        report.rotated += 1
    else:
        report.replaced_meanwhile += 1
