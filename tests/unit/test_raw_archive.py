"""The raw archive: what a fetcher keeps of each broker answer, in either store (database, files).

Both stores pass the same tests, like the bus adapters do. The answers come from the real Zerodha
adapter over real HTTP, so the request really carries its credentials in a header.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.fetcher.archive import AnswerArchive, ArchivedAnswer, redacted, retention_cutoff
from services.fetcher.archive_database import DatabaseArchive
from services.fetcher.archive_files import FileArchive
from services.fetcher.brokers.zerodha import ZerodhaKite
from services.fetcher.handlers import Fetcher
from services.fetcher.limits import BrokerLimiter, BrokerLimits
from services.fetcher.metrics import FetcherMetrics
from services.fetcher.retry import RetryPolicy
from services.fetcher.testing import serve_fake
from shared import topics
from shared.brokers import ZERODHA
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import RawAnswer
from shared.events import HoldingSnapshot, SyncRequested, SyncTrigger, decode_event, utc_now
from tests.support.accounts import create_account

API_KEY = "kitekey-7d1e9a"
ACCESS_TOKEN = "tok/en+Secret-42"  # a slash: JSON may carry it escaped as \/
KEY = CredentialCipher.generate_key()


def _holdings_body(echo: dict[str, str]) -> bytes:
    """A Kite holdings answer that also echoes back what it is given, as a careless broker might."""
    holding = {
        "tradingsymbol": "TCS",
        "exchange": "NSE",
        "isin": "INE467B01029",
        "quantity": 2,
        "t1_quantity": 0,
        "average_price": 3800.5,
        "last_price": 3850,
        **echo,
    }
    return json.dumps({"status": "success", "data": [holding]}).encode()


class EchoingKite:
    """Answers every holdings request with one holding and the request's Authorization header and
    credentials echoed into the body, plainly and JSON-escaped."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.authorizations.append(headers["authorization"])
        echo = {"debug": f"request had {headers['authorization']}", "key": API_KEY, "escaped": "ESCAPED"}
        # json.dumps leaves a slash as is; JSON may escape it, and some servers do.
        body = _holdings_body(echo).replace(b"ESCAPED", ACCESS_TOKEN.replace("/", "\\/").encode())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=["database", "files"])
async def archive(request: pytest.FixtureRequest, engine: AsyncEngine, tmp_path: Path) -> AnswerArchive:
    if request.param == "database":
        return DatabaseArchive(engine)
    return FileArchive(tmp_path / "raw")


NewAccount = Callable[[], Awaitable[uuid.UUID]]


@pytest.fixture
def new_account(sessions: async_sessionmaker[AsyncSession]) -> NewAccount:
    """Makes a broker account and returns its id: the database keeps answers of real accounts only."""

    async def create() -> uuid.UUID:
        return (await create_account(sessions, broker=ZERODHA.code)).id

    return create


@pytest.fixture
async def kite() -> AsyncIterator[tuple[EchoingKite, ZerodhaKite]]:
    fake = EchoingKite()
    async with serve_fake(fake) as base_url:
        adapter = ZerodhaKite(
            base_url=base_url, limiter=BrokerLimiter(BrokerLimits(rate_per_s=1000, burst=1000))
        )
        try:
            yield fake, adapter
        finally:
            await adapter.aclose()


def _request(account_id: uuid.UUID) -> SyncRequested:
    cipher = CredentialCipher(KEY)
    return SyncRequested(
        account_id=account_id,
        broker=ZERODHA.code,
        trigger=SyncTrigger.MANUAL,
        credentials_ciphertext=cipher.encrypt({"api_key": API_KEY, "access_token": ACCESS_TOKEN}),
    )


def _fetcher(
    adapter: ZerodhaKite, bus: InMemoryBus, archive: AnswerArchive, metrics: FetcherMetrics | None = None
) -> Fetcher:
    return Fetcher(
        adapter=adapter,
        bus=bus,
        cipher=CredentialCipher(KEY),
        slots=asyncio.Semaphore(4),
        retry=RetryPolicy(max_attempts=1, base_s=1, max_s=1),
        archive=archive,
        secret_fields=ZERODHA.credential_fields,
        metrics=metrics,
    )


async def test_an_answer_echoing_the_credentials_is_kept_redacted_and_without_headers(
    kite: tuple[EchoingKite, ZerodhaKite], archive: AnswerArchive, new_account: NewAccount
) -> None:
    fake, adapter = kite
    bus = InMemoryBus()
    request = _request(await new_account())
    await _fetcher(adapter, bus, archive).handle_requests([request])

    [record] = bus.records(topics.HOLDINGS_SNAPSHOTS)
    snapshot = decode_event(HoldingSnapshot, record.value)
    [kept] = await archive.answers_of(request.account_id, since=None)
    assert fake.authorizations == [f"token {API_KEY}:{ACCESS_TOKEN}"]  # the secrets were sent...
    for secret in (API_KEY, ACCESS_TOKEN, ACCESS_TOKEN.replace("/", "\\/")):
        assert secret.encode() not in kept.body
    assert b"content-type" not in kept.body.lower()  # no header of the answer either
    assert kept.body.count(b"***") == 4  # ...and the body's four echoes of them are blanked
    assert b'"tradingsymbol": "TCS"' in kept.body  # the rest is as the broker sent it
    assert (kept.run_id, kept.attempt, kept.snapshot_id) == (request.sync_run_id, 1, snapshot.event_id)
    assert kept.status_code == 200 and kept.broker == ZERODHA.code
    # The kept answer still parses to what the sync published.
    assert tuple(adapter.parse_holdings(kept.answer())) == snapshot.holdings


async def test_the_database_keeps_bodies_compressed(engine: AsyncEngine, new_account: NewAccount) -> None:
    archive = DatabaseArchive(engine)
    body = _holdings_body({}) * 20
    await archive.keep([_answer(await new_account(), body)])
    async with engine.connect() as conn:
        row = (await conn.execute(select(RawAnswer.body, RawAnswer.body_bytes))).one()
    assert row.body_bytes == len(body)
    assert len(row.body) < len(body) / 5
    assert zlib.decompress(row.body) == body


async def test_an_attempt_kept_twice_keeps_its_first_answer(
    archive: AnswerArchive, new_account: NewAccount
) -> None:
    account_id = await new_account()
    first = _answer(account_id, b"first")
    await archive.keep([first])
    await archive.keep([_answer(account_id, b"again", run_id=first.run_id)])  # a redelivered request
    assert [a.body for a in await archive.answers_of(account_id, since=None)] == [b"first"]


async def test_answers_are_read_oldest_first_since_a_time_and_pruned_by_age(
    archive: AnswerArchive, new_account: NewAccount
) -> None:
    account_id, now = await new_account(), utc_now()
    ages = {"old": timedelta(days=40), "middle": timedelta(days=10), "new": timedelta(0)}
    await archive.keep(
        [_answer(account_id, name.encode(), received_at=now - age) for name, age in ages.items()]
    )
    await archive.keep([_answer(await new_account(), b"someone else's")])

    def bodies(answers: list[ArchivedAnswer]) -> list[bytes]:
        return [a.body for a in answers]

    assert bodies(await archive.answers_of(account_id, since=None)) == [b"old", b"middle", b"new"]
    assert bodies(await archive.answers_of(account_id, since=now - timedelta(days=11))) == [b"middle", b"new"]
    cutoff = retention_cutoff(30)
    assert cutoff is not None
    assert await archive.prune(received_before=cutoff) == 1
    assert bodies(await archive.answers_of(account_id, since=None)) == [b"middle", b"new"]
    assert retention_cutoff(0) is None  # 0 keeps answers forever


def test_redaction_blanks_a_secret_however_json_writes_it() -> None:
    secret = 'p"ass/wörd'
    body = json.dumps({"a": secret, "b": secret}).encode() + json.dumps(secret, ensure_ascii=False).encode()
    body += secret.encode()
    assert redacted(body, [secret, ""]) == b'{"a": "***", "b": "***"}"***"***'


def _answer(
    account_id: uuid.UUID, body: bytes, *, run_id: uuid.UUID | None = None, received_at: Any = None
) -> ArchivedAnswer:
    return ArchivedAnswer(
        run_id=run_id or uuid.uuid4(),
        attempt=1,
        account_id=account_id,
        broker=ZERODHA.code,
        received_at=received_at or utc_now(),
        status_code=200,
        body=body,
        snapshot_id=None,
    )


class BrokenArchive:
    """An archive whose store is gone (the database down, the disk full)."""

    async def keep(self, answers: Sequence[ArchivedAnswer]) -> None:
        raise OSError("no space left on device")

    async def answers_of(self, account_id: uuid.UUID, *, since: datetime | None) -> list[ArchivedAnswer]:
        return []

    async def prune(self, *, received_before: datetime) -> int:
        return 0


async def test_a_failing_archive_is_counted_and_the_syncs_go_on(
    kite: tuple[EchoingKite, ZerodhaKite], caplog: pytest.LogCaptureFixture
) -> None:
    _, adapter = kite
    bus, registry = InMemoryBus(), CollectorRegistry()
    fetcher = _fetcher(adapter, bus, BrokenArchive(), FetcherMetrics(registry))
    outcomes = await fetcher.handle_requests([_request(uuid.uuid4()), _request(uuid.uuid4())])

    assert outcomes == {"snapshot": 2}
    assert len(bus.records(topics.HOLDINGS_SNAPSHOTS)) == 2
    failed = {"broker": ZERODHA.code, "outcome": "failed"}
    assert registry.get_sample_value("portfolio_sync_fetcher_raw_answers_total", failed) == 2
    assert "raw answers not archived" in caplog.text


async def test_the_answer_of_an_account_deleted_meanwhile_is_dropped_and_the_others_kept(
    engine: AsyncEngine, new_account: NewAccount
) -> None:
    archive, account_id = DatabaseArchive(engine), await new_account()
    await archive.keep([_answer(uuid.uuid4(), b"of a deleted account"), _answer(account_id, b"kept")])
    assert [a.body for a in await archive.answers_of(account_id, since=None)] == [b"kept"]
