"""The archive of raw broker answers: a small port, what goes in it, and how it is made safe to keep.

Each answer a broker gives a sync attempt is kept as received, minus what must never be stored:
headers are not kept at all (`BrokerAnswer` has none), and the account's secret credential values
(its broker type's required fields, and any the adapter names in `BrokerAnswer.secrets`) are
blanked out of the body, as written and as JSON would escape them. Bodies are compressed
(zlib) by the adapters that store them. `portfolio-sync replay` reads the answers back and parses
them again with today's adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from services.fetcher.adapter import BrokerAnswer
from shared.events import utc_now

log = logging.getLogger(__name__)

REDACTED = b"***"
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class ArchivedAnswer:
    """One attempt's answer, ready to keep: its body already redacted, not yet compressed."""

    run_id: uuid.UUID
    attempt: int
    account_id: uuid.UUID
    broker: str
    received_at: datetime
    status_code: int
    body: bytes
    snapshot_id: uuid.UUID | None  # the snapshot it became; None when it could not be parsed

    @classmethod
    def of(
        cls,
        answer: BrokerAnswer,
        *,
        run_id: uuid.UUID,
        attempt: int,
        account_id: uuid.UUID,
        broker: str,
        secrets: Iterable[str],
        snapshot_id: uuid.UUID | None,
    ) -> ArchivedAnswer:
        return cls(
            run_id=run_id,
            attempt=attempt,
            account_id=account_id,
            broker=broker,
            received_at=utc_now(),
            status_code=answer.status_code,
            body=redacted(answer.body, (*answer.secrets, *secrets)),
            snapshot_id=snapshot_id,
        )

    def answer(self) -> BrokerAnswer:
        """The answer as an adapter parses it (with no secrets: the body has none left)."""
        return BrokerAnswer(status_code=self.status_code, body=self.body)


class AnswerArchive(Protocol):
    async def keep(self, answers: Sequence[ArchivedAnswer]) -> None:
        """Store the answers; one already stored (same run and attempt: a redelivery) is left as it is."""

    async def answers_of(self, account_id: uuid.UUID, *, since: datetime | None) -> list[ArchivedAnswer]:
        """The account's answers received at or after `since` (all when None), oldest first."""

    async def prune(self, *, received_before: datetime) -> int:
        """Delete the answers received before the time; return how many went."""


def redacted(body: bytes, secrets: Iterable[str]) -> bytes:
    """`body` with every secret blanked out: as is, and as a JSON string would carry it (escaped
    quotes, backslashes, non-ASCII and, optionally, slashes). Longest first, so that a secret that
    contains another is blanked whole."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        escaped = json.dumps(secret)[1:-1]
        forms = {secret, escaped, escaped.replace("/", "\\/"), json.dumps(secret, ensure_ascii=False)[1:-1]}
        for form in sorted(forms, key=len, reverse=True):
            body = body.replace(form.encode(), REDACTED)
    return body


def compressed(body: bytes) -> bytes:
    return zlib.compress(body, 6)


def decompressed(stored: bytes) -> bytes:
    return zlib.decompress(stored)


def retention_cutoff(retention_days: float) -> datetime | None:
    """Answers received before this are pruned; None: kept forever (retention 0)."""
    return utc_now() - timedelta(days=retention_days) if retention_days else None


async def prune_periodically(archive: AnswerArchive, *, retention_days: float, stop: asyncio.Event) -> None:
    """Delete answers older than the retention, now and every hour until `stop`. Every fetcher of
    every broker does it: deleting what another already deleted is no error, only no work."""
    while not stop.is_set():
        cutoff = retention_cutoff(retention_days)
        if cutoff is None:
            return
        try:
            pruned = await archive.prune(received_before=cutoff)
        except Exception:
            log.exception("raw answers not pruned; trying again in an hour")
        else:
            if pruned:
                log.info("raw answers pruned", extra={"pruned": pruned, "before": cutoff.isoformat()})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PRUNE_EVERY_S)
