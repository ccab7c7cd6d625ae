"""GET /v1/transactions over the trades the real ledger derives and records."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from shared.db.tables import Transaction
from shared.events import TradeSide
from tests.unit.api.conftest import Headers, new_account, new_portfolio
from tests.unit.api.ledger_feed import at, holding, reported, snapshot

SMALL = [f"S{i:02}" for i in range(1, 11)]


@dataclass(frozen=True)
class Seeded:
    a: str  # alice's account in `portfolio_id`
    b: str  # alice's account in another portfolio
    bobs_account: str
    s2: uuid.UUID  # A's second snapshot: a derived buy and a reported trade


@pytest.fixture
async def seeded(
    client: httpx.AsyncClient,
    alice: Headers,
    bob: Headers,
    account_id: str,
    ledger: Ledger,
) -> Seeded:
    """21 transactions of alice's (12 of them tied at at(1)), 1 of bob's."""
    other_portfolio = await new_portfolio(client, alice, "Other")
    b = await new_account(client, alice, other_portfolio)
    bobs_account = await new_account(client, bob, await new_portfolio(client, bob, "Bob's"))
    small = [holding(symbol, "1") for symbol in SMALL]
    s2 = snapshot(
        account_id,
        at(2),
        holding("TCS", "15", "110", "131"),  # bought 5: derived at 130 from the average cost
        holding("INFY", "2", "1400", "1450"),  # sold 3: derived at the last price
        holding("RELIANCE", "2", "2900.5"),  # explained by the reported trade: nothing derived
        *small[:-1],  # S10 closed
        trades=[reported("R-1", TradeSide.BUY, "RELIANCE", "2", "2900.5", at(1.5))],
    )
    await ledger.apply_batch(
        [
            snapshot(
                account_id, at(1), holding("TCS", "10", "100", "101"), holding("INFY", "5", "1400"), *small
            ),
            s2,
            snapshot(b, at(2), holding("TCS", "3"), holding("HDFC", "1")),
            snapshot(bobs_account, at(2), holding("TCS", "100")),
        ]
    )
    await ledger.apply_batch(
        [
            snapshot(
                account_id,
                at(3),
                holding("TCS", "15", "110"),
                holding("RELIANCE", "2", "2900.5"),
                holding("WIPRO", "4", "450"),
                *small[:-1],
            ),
            snapshot(
                b,
                at(3),
                holding("TCS", "2"),
                holding("HDFC", "1"),
                trades=[reported("R-2", TradeSide.SELL, "TCS", "1", "3600", at(2.5))],
            ),
        ]
    )
    return Seeded(a=account_id, b=b, bobs_account=bobs_account, s2=s2.event_id)


async def _stored(sessions: async_sessionmaker[AsyncSession], *account_ids: str) -> list[Transaction]:
    """What the ledger wrote for these accounts: the truth the API is compared with."""
    async with sessions() as session:
        query = select(Transaction).where(Transaction.account_id.in_([uuid.UUID(a) for a in account_ids]))
        return list((await session.scalars(query)).all())


async def _walk(
    client: httpx.AsyncClient, headers: Headers, params: dict[str, Any], *, limit: int
) -> list[list[dict[str, Any]]]:
    """Every page, following next_cursor until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = params | {"limit": limit} | ({} if cursor is None else {"cursor": cursor})
        response = await client.get("/v1/transactions", params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) <= 100, "next_cursor never ends"


def _newest_first(items: list[dict[str, Any]]) -> bool:
    times = [datetime.fromisoformat(item["occurred_at"]) for item in items]
    return times == sorted(times, reverse=True)


@pytest.mark.asyncio
async def test_a_derived_and_a_reported_transaction_in_full(
    client: httpx.AsyncClient, alice: Headers, seeded: Seeded
) -> None:
    tcs = await client.get(
        "/v1/transactions", params={"symbol": "TCS", "account_id": seeded.a}, headers=alice
    )
    reliance = await client.get("/v1/transactions", params={"symbol": "RELIANCE"}, headers=alice)

    assert tcs.status_code == 200
    buy, opening = tcs.json()["items"]
    assert tcs.json()["next_cursor"] is None
    assert buy == {
        "id": buy["id"],
        "account_id": seeded.a,
        "symbol": "TCS",
        "exchange": "NSE",
        "kind": "buy",
        "quantity": "5",
        "price": "130",  # (15 x 110 - 10 x 100) / 5
        "price_source": "average_cost",
        "currency": "INR",
        "occurred_at": buy["occurred_at"],
        "origin": "derived",
        "snapshot_id": str(seeded.s2),
        "trade_id": None,
    }
    assert datetime.fromisoformat(buy["occurred_at"]) == at(2)
    assert (opening["kind"], opening["quantity"], opening["price"]) == ("opening", "10", "100")
    (trade,) = reliance.json()["items"]
    assert trade == {
        "id": trade["id"],
        "account_id": seeded.a,
        "symbol": "RELIANCE",
        "exchange": "NSE",
        "kind": "buy",
        "quantity": "2",
        "price": "2900.5",
        "price_source": "reported",
        "currency": "INR",
        "occurred_at": trade["occurred_at"],
        "origin": "reported",
        "snapshot_id": str(seeded.s2),
        "trade_id": "R-1",
    }
    assert datetime.fromisoformat(trade["occurred_at"]) == at(1.5)


@pytest.mark.asyncio
async def test_sales_are_priced_at_the_last_price_and_a_closing_without_one_has_no_price(
    client: httpx.AsyncClient, alice: Headers, seeded: Seeded
) -> None:
    infy = await client.get("/v1/transactions", params={"symbol": "INFY"}, headers=alice)
    s10 = await client.get("/v1/transactions", params={"symbol": "S10"}, headers=alice)

    assert [(t["kind"], t["quantity"], t["price"], t["price_source"]) for t in infy.json()["items"]] == [
        ("closing", "2", "1450", "last_price"),  # at(3): the last price known, the previous snapshot's
        ("sell", "3", "1450", "last_price"),
        ("opening", "5", "1400", "average_cost"),
    ]
    closing, _opening = s10.json()["items"]
    assert (closing["kind"], closing["price"], closing["price_source"]) == ("closing", None, None)


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [1, 4, 5, 20, 21, 500])
async def test_walking_the_pages_returns_every_transaction_once_newest_first(
    client: httpx.AsyncClient,
    alice: Headers,
    seeded: Seeded,
    sessions: async_sessionmaker[AsyncSession],
    limit: int,
) -> None:
    stored = await _stored(sessions, seeded.a, seeded.b)
    assert len(stored) == 21
    assert sum(t.occurred_at == at(1) for t in stored) == 12  # ties a page boundary falls among

    pages = await _walk(client, alice, {}, limit=limit)

    walked = [item["id"] for page in pages for item in page]
    assert len(walked) == len(set(walked))
    assert set(walked) == {str(t.id) for t in stored}
    assert [len(page) for page in pages[:-1]] == [limit] * (len(pages) - 1)
    assert len(pages) == -(-21 // limit)  # no empty last page, even when 21 divides evenly
    assert _newest_first([item for page in pages for item in page])
    everything = await client.get("/v1/transactions", params={"limit": 500}, headers=alice)
    assert walked == [item["id"] for item in everything.json()["items"]]


@pytest.mark.asyncio
async def test_trades_arriving_between_pages_neither_repeat_nor_hide_the_rest(
    client: httpx.AsyncClient,
    alice: Headers,
    seeded: Seeded,
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
) -> None:
    before = {str(t.id) for t in await _stored(sessions, seeded.a, seeded.b)}
    first = await client.get("/v1/transactions", params={"limit": 6}, headers=alice)
    unchanged = [holding(symbol, "1") for symbol in SMALL[:-1]]
    await ledger.apply_batch(
        [
            snapshot(
                seeded.a,
                at(4),
                holding("TCS", "16", "110"),
                holding("RELIANCE", "2", "2900.5"),
                holding("WIPRO", "4", "450"),
                holding("ITC", "9", "430"),
                *unchanged,
            )
        ]
    )
    assert len({str(t.id) for t in await _stored(sessions, seeded.a, seeded.b)} - before) > 0

    seen = [item["id"] for item in first.json()["items"]]
    cursor = first.json()["next_cursor"]
    while cursor is not None:
        page = await client.get("/v1/transactions", params={"limit": 6, "cursor": cursor}, headers=alice)
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        assert len(seen) <= 100, "next_cursor never ends"

    assert len(seen) == len(set(seen))
    assert set(seen) == before


Predicate = Callable[[Transaction, Seeded], bool]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"account_id": "b"}, lambda t, s: str(t.account_id) == s.b, id="account"),
        pytest.param({"portfolio_id": "p1"}, lambda t, s: str(t.account_id) == s.a, id="portfolio"),
        pytest.param({"symbol": "TCS"}, lambda t, s: t.symbol == "TCS", id="symbol"),
        pytest.param({"origin": "reported"}, lambda t, s: t.origin == "reported", id="reported"),
        pytest.param({"origin": "derived"}, lambda t, s: t.origin == "derived", id="derived"),
        pytest.param(
            {"from": at(2), "to": at(3)},
            lambda t, s: at(2) <= t.occurred_at < at(3),
            id="from-inclusive-to-exclusive",
        ),
        pytest.param({"from": at(2.5)}, lambda t, s: t.occurred_at >= at(2.5), id="from-only"),
        pytest.param({"to": at(2)}, lambda t, s: t.occurred_at < at(2), id="to-only"),
        pytest.param(
            {"account_id": "a", "symbol": "TCS", "origin": "derived"},
            lambda t, s: str(t.account_id) == s.a and t.symbol == "TCS" and t.origin == "derived",
            id="combined",
        ),
        pytest.param({"account_id": "b", "portfolio_id": "p1"}, lambda t, s: False, id="disjoint"),
    ],
)
async def test_filters_select_exactly_the_matching_transactions(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    seeded: Seeded,
    sessions: async_sessionmaker[AsyncSession],
    filters: dict[str, Any],
    expected: Predicate,
) -> None:
    ids = {"a": seeded.a, "b": seeded.b, "p1": portfolio_id}
    params = {
        key: value.isoformat() if isinstance(value, datetime) else ids.get(value, value)
        for key, value in filters.items()
    }
    stored = await _stored(sessions, seeded.a, seeded.b)
    wanted = {str(t.id) for t in stored if expected(t, seeded)}
    assert len(wanted) < len(stored)  # the filter leaves something out

    pages = await _walk(client, alice, params, limit=2)

    walked = [item["id"] for page in pages for item in page]
    assert len(walked) == len(set(walked))
    assert set(walked) == wanted
    assert _newest_first([item for page in pages for item in page])


@pytest.mark.asyncio
async def test_the_time_bounds_include_from_and_exclude_to(
    client: httpx.AsyncClient, alice: Headers, seeded: Seeded
) -> None:
    window = await client.get(
        "/v1/transactions", params={"from": at(2).isoformat(), "to": at(3).isoformat()}, headers=alice
    )

    times = {datetime.fromisoformat(t["occurred_at"]) for t in window.json()["items"]}
    assert times == {at(2), at(2.5)}  # at(3) exists too (see the filter tests), but is excluded


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        base64.urlsafe_b64encode(b"hello").decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'["2026-05-04T09:00:00", "6f1c3c1e-3c39-4c66-9d5c-5c0b1f1d2a11"]').decode(),
        base64.urlsafe_b64encode(b'["2026-05-04T09:00:00+00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(b'["2026-05-04T09:00:00+00:00"]').decode(),
        "A" * 1000,
    ],
)
async def test_an_invalid_cursor_is_400_with_a_message(
    client: httpx.AsyncClient, alice: Headers, cursor: str
) -> None:
    response = await client.get("/v1/transactions", params={"cursor": cursor}, headers=alice)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("invalid cursor: pass the `next_cursor` of the previous page")


@pytest.mark.asyncio
async def test_from_after_to_is_400_with_a_message(client: httpx.AsyncClient, alice: Headers) -> None:
    response = await client.get(
        "/v1/transactions", params={"from": at(3).isoformat(), "to": at(2).isoformat()}, headers=alice
    )

    assert response.status_code == 400
    assert (
        "`from` (2026-05-04T12:00:00+00:00) is after `to` (2026-05-04T11:00:00+00:00)"
        in response.json()["detail"]
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-05-04T09:00:00"}, "from"),
        ({"to": "tomorrow"}, "to"),
        ({"origin": "imagined"}, "origin"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"symbol": ""}, "symbol"),
        ({"account_id": "not-a-uuid"}, "account_id"),
        ({"portfolio_id": "42"}, "portfolio_id"),
    ],
)
async def test_bad_query_parameters_are_422_naming_the_parameter(
    client: httpx.AsyncClient, alice: Headers, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/transactions", params=params, headers=alice)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field]


@pytest.mark.asyncio
async def test_each_user_sees_only_their_own_transactions(
    client: httpx.AsyncClient, alice: Headers, bob: Headers, portfolio_id: str, seeded: Seeded
) -> None:
    bobs = await client.get("/v1/transactions", headers=bob)
    alices = await client.get("/v1/transactions", params={"limit": 500}, headers=alice)

    assert [(t["account_id"], t["symbol"], t["quantity"]) for t in bobs.json()["items"]] == [
        (seeded.bobs_account, "TCS", "100")
    ]
    assert seeded.bobs_account not in {t["account_id"] for t in alices.json()["items"]}
    assert {t["account_id"] for t in alices.json()["items"]} == {seeded.a, seeded.b}
    for who, params in [
        (bob, {"account_id": seeded.a}),
        (bob, {"portfolio_id": portfolio_id}),
        (alice, {"account_id": seeded.bobs_account}),
    ]:
        response = await client.get("/v1/transactions", params=params, headers=who)
        unknown = await client.get(
            "/v1/transactions", params={key: str(uuid.uuid4()) for key in params}, headers=who
        )
        assert response.status_code == 404, params
        assert response.json() == unknown.json()
    assert (await client.get("/v1/transactions")).status_code == 401
