"""The holdings routes' fast path (services/api/fast_holdings.py, on asyncpg) answers exactly as the
routes' SQLAlchemy path: each request is sent twice on one app, once through each, and the status,
headers and body must be the same bytes.

The fast path's context has an engine that reaches no database: an answer that came through the
SQLAlchemy path instead would be a 503, not the same bytes."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api import ApiResources, create_app
from services.api.context import ApiContext
from services.api.fast_reads import FastReads, open_fast_reads
from services.ledger.handlers import Ledger
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.engine import create_engine
from shared.db.tables import ApiToken, BrokerAccount, Snapshot, SnapshotHolding, SnapshotStatus
from shared.events import utc_now
from shared.numeric import EXACT
from shared.settings import Settings
from tests.unit.api.conftest import BROKER, Headers
from tests.unit.api.ledger_feed import at, holding, snapshot

NOWHERE = "postgresql+asyncpg://nobody:nothing@127.0.0.1:9/nothing"


@dataclass
class TwoPaths:
    """One app, one client; each request answered by the SQLAlchemy path, then by the fast path."""

    app: FastAPI
    http: httpx.AsyncClient
    declared: ApiContext
    fast: ApiContext

    async def send(
        self, method: str, path: str, headers: Headers | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Through the SQLAlchemy path: for the tests' own set-up."""
        self.app.state.api_context = self.declared
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def both(self, path: str, headers: Headers | None) -> tuple[httpx.Response, httpx.Response]:
        declared = await self.send("GET", path, headers)
        self.app.state.api_context = self.fast
        return declared, await self.http.get(path, headers=headers)

    async def same(self, path: str, headers: Headers | None, status: int) -> httpx.Response:
        declared, fast = await self.both(path, headers)
        assert declared.status_code == status, declared.text
        assert _answer(fast) == _answer(declared)
        return fast


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, response.headers.multi_items(), response.content


@pytest.fixture
def settings(engine: AsyncEngine) -> Settings:
    return Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        bus="memory",
        credentials_keys=SecretStr(CredentialCipher.generate_key()),
    )


@pytest.fixture
def ledger(sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus) -> Ledger:
    return Ledger(sessions=sessions, bus=bus)


@pytest.fixture
async def fast_reads(engine: AsyncEngine) -> AsyncIterator[FastReads]:
    async with open_fast_reads(engine.url, max_connections=2) as reads:
        yield reads


async def _two_paths(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, fast_reads: FastReads
) -> AsyncIterator[TwoPaths]:
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    nowhere = create_engine(NOWHERE)
    declared = ApiContext.create(settings, ApiResources(engine=engine, bus=bus, cipher=cipher))
    fast = ApiContext.create(
        settings, ApiResources(engine=nowhere, bus=bus, cipher=cipher, fast_reads=fast_reads)
    )
    app = create_app(settings, resources=declared.resources)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api.test"
        ) as http:
            yield TwoPaths(app, http, declared, fast)
    finally:
        await nowhere.dispose()


@pytest.fixture
async def paths(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, fast_reads: FastReads
) -> AsyncIterator[TwoPaths]:
    async for two in _two_paths(settings, engine, bus, fast_reads):
        yield two


async def _sign_up(paths: TwoPaths) -> Headers:
    response = await paths.send("POST", "/v1/users", json={"email": f"u-{uuid.uuid4().hex[:12]}@example.com"})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['api_token']}"}


async def _created(paths: TwoPaths, path: str, headers: Headers, body: dict[str, Any]) -> dict[str, Any]:
    response = await paths.send("POST", path, headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_holdings_now_and_as_of_are_the_same_bytes(paths: TwoPaths, ledger: Ledger) -> None:
    alice, bob = await _sign_up(paths), await _sign_up(paths)
    portfolio = (await _created(paths, "/v1/portfolios", alice, {"name": "Main"}))["id"]
    empty_portfolio = (await _created(paths, "/v1/portfolios", alice, {"name": "Nothing"}))["id"]
    accounts = [
        (
            await _created(
                paths, f"/v1/portfolios/{portfolio}/accounts", alice, {"broker": BROKER, "label": label}
            )
        )["id"]
        for label in ("one", "two", "empty")
    ]
    one, two, empty = accounts
    # Two accounts sharing instruments (consolidated lines), a history with a late and a held snapshot
    # (both branches of the holdings statement), prices, decimals with and without trailing zeros.
    for event in (
        snapshot(one, at(1), holding("TCS", "10", "3400.5", last_price="3500"), holding("INFY", "5")),
        snapshot(two, at(1.5), holding("TCS", "-2.250", "3300", last_price="3510.25"), holding("WIPRO", "8")),
        snapshot(one, at(3), holding("TCS", "20", "3450", last_price="3600"), holding("INFY", "5.5")),
        snapshot(one, at(2), holding("TCS", "15"), holding("INFY", "5")),  # late
        snapshot(one, at(4), holding("HDFC", "1")),  # held: one of two instruments kept
        snapshot(
            two,
            at(5),
            holding("TCS", "-2.250", "3300", last_price="3510.25"),
            holding("WIPRO", "8"),
            holding("TCS", "1", "3000.12345678", last_price="3700", exchange="BSE"),
        ),
    ):
        await ledger.apply_batch([event])
    moments = [
        "",
        "?as_of=2026-05-04T08:00:00Z",
        "?as_of=2026-05-04T11:30:00Z",
        "?as_of=2026-05-04T15:30:00%2B05:30",
    ]
    moments.append("?as_of=2026-05-04T13:00:00.123456Z&unknown=1")
    for moment in moments:
        for account in accounts:
            await paths.same(f"/v1/accounts/{account}/holdings{moment}", alice, 200)
        await paths.same(f"/v1/portfolios/{portfolio}/holdings{moment}", alice, 200)
        await paths.same(f"/v1/portfolios/{empty_portfolio}/holdings{moment}", alice, 200)
    # At 11:30 both accounts held TCS on NSE: one line of two shares.
    lines = (await paths.same(f"/v1/portfolios/{portfolio}/holdings{moments[2]}", alice, 200)).json()
    assert [len(line["accounts"]) for line in lines if line["symbol"] == "TCS"] == [2]
    assert (await paths.same(f"/v1/accounts/{empty}/holdings", alice, 200)).json() == []
    # Not the caller's, or no such thing: a 404 either way.
    await paths.same(f"/v1/accounts/{one}/holdings", bob, 404)
    await paths.same(f"/v1/portfolios/{portfolio}/holdings?as_of=2026-05-04T12:00:00Z", bob, 404)
    await paths.same(f"/v1/accounts/{uuid.uuid4()}/holdings", alice, 404)
    await paths.same(f"/v1/portfolios/{uuid.uuid4()}/holdings", alice, 404)
    # A read token reads.
    read = await _created(paths, "/v1/tokens", alice, {"name": "reader", "scope": "read"})
    await paths.same(
        f"/v1/portfolios/{portfolio}/holdings", {"Authorization": f"Bearer {read['token']}"}, 200
    )


BIG = "99999999999999999999.999999999999999999"  # NUMERIC(38, 18)'s largest
LONG = "12345678901234567890.123456789012345678"


def _line(
    symbol: str, quantity: str, average_price: str, last_price: str | None, **more: Any
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "exchange": "NSE",
        "isin": None,
        "currency": "INR",
        "asset_type": "equity",
        "quantity": Decimal(quantity),
        "average_price": Decimal(average_price),
        "last_price": None if last_price is None else Decimal(last_price),
    } | more


async def _current_snapshot(
    engine: AsyncEngine, account_id: str, taken_at: datetime, lines: list[dict[str, Any]]
) -> None:
    """A snapshot keeping its own holdings, made the account's current one, written as is: values
    the ledger's events would refuse (a negative average price) and quotes the instrument's price
    series would make equal (two accounts' snapshots at one time quoting different prices)."""
    snapshot_id = uuid.uuid4()
    async with engine.begin() as connection:
        await connection.execute(
            insert(Snapshot).values(
                id=snapshot_id,
                account_id=uuid.UUID(account_id),
                request_id=uuid.uuid4(),
                taken_at=taken_at,
                received_at=taken_at,
                holdings_count=len(lines),
                status=SnapshotStatus.APPLIED,
                holdings_kept=True,
            )
        )
        await connection.execute(
            insert(SnapshotHolding), [{"snapshot_id": snapshot_id} | line for line in lines]
        )
        await connection.execute(
            update(BrokerAccount)
            .where(BrokerAccount.id == uuid.UUID(account_id))
            .values(current_snapshot_id=snapshot_id)
        )


async def test_edge_values_are_the_same_bytes(paths: TwoPaths, engine: AsyncEngine) -> None:
    """Digits beyond Python's default 28, ties of the weighted average's rounding, escaped text,
    times with and without microseconds, the order of lines and shares and the first of each."""
    alice = await _sign_up(paths)
    portfolio = (await _created(paths, "/v1/portfolios", alice, {"name": "Edges"}))["id"]
    one, two, three = [
        (
            await _created(
                paths, f"/v1/portfolios/{portfolio}/accounts", alice, {"broker": BROKER, "label": n}
            )
        )["id"]
        for n in ("one", "two", "three")
    ]
    fresh = at(1) + timedelta(microseconds=120000)
    await _current_snapshot(
        engine,
        one,
        fresh,
        [
            _line('Q"UOTE\\', LONG, BIG, BIG, exchange="Börse", currency="€UR", isin="日本"),
            _line("TAB\tNL\n\x01\x1f\x7f\u2028é", "0", "0", "0", isin=""),
            _line("TINY", "0.000000000000000001", "0.000000123456789012", "0.000000000000000001"),
            _line("NEG", f"-{LONG}", BIG, BIG),
            _line("TIE", "1", "0.00000001", "5", isin=""),
            _line("TIE2", "1", "0.00000003", None),
            _line("SHORT", "-3", "-2.5", "-0.1"),
            _line("NEGTIE", "1", "-0.00000002", None),
            _line("b", "1", "1", "1"),
            _line("B", "1", "1", "1"),
            _line("É", "1", "1", "1"),
            _line("a", "1", "1", "1", exchange=""),
        ],
    )
    await _current_snapshot(
        engine,
        two,
        fresh,
        [
            _line('Q"UOTE\\', LONG, "0.000000000000000001", "1", exchange="Börse", currency="€UR"),
            _line("NEG", f"-{LONG}", LONG, None),
            _line("TIE", "-1", "0.00000002", "6", isin="INE000000001", asset_type="bond"),
            _line("TIE2", "-1", "0.00000002", "1"),
            _line("SHORT", "1", "-1", "-0.3"),
            _line("NEGTIE", "-1", "-0.00000003", None),
            _line("a", "2", "3", "4", exchange="", asset_type="etf"),
        ],
    )
    await _current_snapshot(
        engine,
        three,
        at(1),
        [
            _line("TIE", "1", "0.00000001", "7", isin="INE000000002"),
            _line("TIE2", "1", "0.00000001", "5", currency="USD"),  # another line
        ],
    )
    for moment in ("", "?as_of=2026-05-04T12:00:00Z"):
        for account in (one, two, three):
            await paths.same(f"/v1/accounts/{account}/holdings{moment}", alice, 200)
        lines = (await paths.same(f"/v1/portfolios/{portfolio}/holdings{moment}", alice, 200)).json()
    by_key = {(line["symbol"], line["currency"]): line for line in lines}
    tie = by_key["TIE", "INR"]
    # Weight 3, cost 0.00000004: 0.0000000133.. (no tie); the price of the fresher snapshots, the
    # first account's of the two; the first non-empty ISIN of the accounts in order.
    assert tie["average_price"] == "0.00000001"
    assert tie["last_price"] == ("5" if uuid.UUID(one) < uuid.UUID(two) else "6")
    isins = {uuid.UUID(one): None, uuid.UUID(two): "INE000000001", uuid.UUID(three): "INE000000002"}
    first_isin = [isins[account] for account in sorted(isins) if isins[account]]
    assert tie["isin"] == first_isin[0]
    # Ties: to the even neighbour (Postgres's round() would give 0.00000003 and -0.00000003).
    assert by_key["TIE2", "INR"]["average_price"] == "0.00000002"
    assert by_key["NEGTIE", "INR"]["average_price"] == "-0.00000002"
    assert [line["symbol"] for line in lines] == sorted(line["symbol"] for line in lines)
    assert by_key["NEG", "INR"]["quantity"] == f"-{EXACT.multiply(Decimal(LONG), 2)}"
    assert len(by_key["NEG", "INR"]["market_value"]) > 60  # every digit of a 76-digit product


async def test_refused_tokens_are_the_same_answers(paths: TwoPaths, engine: AsyncEngine) -> None:
    alice = await _sign_up(paths)
    portfolio = (await _created(paths, "/v1/portfolios", alice, {"name": "Main"}))["id"]
    path = f"/v1/portfolios/{portfolio}/holdings"
    await paths.same(path, None, 401)
    await paths.same(path, {"Authorization": "Basic abc"}, 401)
    await paths.same(path, {"Authorization": "Bearer not-a-token"}, 401)
    revoked = await _created(paths, "/v1/tokens", alice, {"name": "revoked", "scope": "read"})
    revoked_headers = {"Authorization": f"Bearer {revoked['token']}"}
    await paths.same(path, revoked_headers, 200)
    assert (await paths.send("DELETE", f"/v1/tokens/{revoked['id']}", alice)).status_code == 204
    await paths.same(path, revoked_headers, 401)  # at once: nothing remembers a token check
    expired = await _created(paths, "/v1/tokens", alice, {"name": "expired", "expires_in_seconds": 600})
    async with engine.begin() as connection:
        await connection.execute(
            update(ApiToken)
            .where(ApiToken.id == uuid.UUID(expired["id"]))
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
    await paths.same(path, {"Authorization": f"Bearer {expired['token']}"}, 401)


async def test_invalid_input_is_fastapis_own_422(paths: TwoPaths) -> None:
    alice = await _sign_up(paths)
    paths.fast = ApiContext.create(
        paths.fast.settings,
        ApiResources(
            engine=paths.declared.resources.engine,
            bus=paths.declared.resources.bus,
            cipher=paths.declared.resources.cipher,
            fast_reads=paths.fast.resources.fast_reads,
        ),
    )
    for path in (
        "/v1/accounts/not-a-uuid/holdings",
        f"/v1/accounts/{uuid.uuid4()}/holdings?as_of=2026-05-04T12:00:00",  # no zone
        f"/v1/portfolios/{uuid.uuid4()}/holdings?as_of=",
        f"/v1/portfolios/{uuid.uuid4()}/holdings?as_of=1700000000",
    ):
        await paths.same(path, alice, 422)


async def test_the_last_use_of_a_token_is_noted(paths: TwoPaths, engine: AsyncEngine) -> None:
    alice = await _sign_up(paths)
    portfolio = (await _created(paths, "/v1/portfolios", alice, {"name": "Main"}))["id"]
    reader = await _created(paths, "/v1/tokens", alice, {"name": "reader", "scope": "read"})
    token_id = uuid.UUID(reader["id"])

    async def last_used() -> Any:
        async with engine.connect() as connection:
            return await connection.scalar(select(ApiToken.last_used_at).where(ApiToken.id == token_id))

    assert await last_used() is None
    paths.app.state.api_context = paths.fast
    answer = await paths.http.get(
        f"/v1/portfolios/{portfolio}/holdings", headers={"Authorization": f"Bearer {reader['token']}"}
    )
    assert answer.status_code == 200
    noted = await last_used()
    assert noted is not None and utc_now() - noted < timedelta(minutes=1)


@pytest.fixture
async def limited(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, fast_reads: FastReads
) -> AsyncIterator[TwoPaths]:
    async for two in _two_paths(
        settings.model_copy(update={"token_rate_limit_per_minute": 4}), engine, bus, fast_reads
    ):
        yield two


async def test_over_the_rate_limit_is_the_same_429(limited: TwoPaths) -> None:
    alice = await _sign_up(limited)
    portfolio = (await _created(limited, "/v1/portfolios", alice, {"name": "Main"}))["id"]
    path = f"/v1/portfolios/{portfolio}/holdings"
    declared, fast = await limited.both(path, alice)  # the 2nd and 3rd requests of the window (or 1st, 2nd)
    assert _answer(declared) == _answer(fast) and fast.status_code == 200
    while declared.status_code == 200:  # a window may turn over: go on until the limit is reached
        declared, fast = await limited.both(path, alice)
    assert declared.status_code == fast.status_code == 429
    # The same answer but for the seconds left, which may have ticked between the two.
    assert _without_numbers(fast) == _without_numbers(declared)
    assert abs(int(fast.headers["retry-after"]) - int(declared.headers["retry-after"])) <= 1


def _without_numbers(response: httpx.Response) -> tuple[int, list[tuple[str, str]], str]:
    return (
        response.status_code,
        [(name, re.sub(r"\d+", "N", value)) for name, value in response.headers.multi_items()],
        re.sub(r"\d+", "N", response.text),
    )
