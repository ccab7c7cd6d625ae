"""`GET /v1/portfolios/{id}/valuations`: the portfolio's value per currency over the history the real
ledger writes, each point what the as-of holdings at its time are worth."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.ledger.handlers import Ledger
from tests.unit.api.conftest import Headers, new_account
from tests.unit.api.ledger_feed import at, holding, snapshot


async def _valuations(
    client: httpx.AsyncClient, headers: Headers, portfolio_id: str, **params: Any
) -> dict[str, Any]:
    query = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in params.items()}
    response = await client.get(f"/v1/portfolios/{portfolio_id}/valuations", params=query, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _points(body: dict[str, Any]) -> list[tuple[datetime, str, Decimal]]:
    return [(datetime.fromisoformat(p["at"]), p["currency"], Decimal(p["value"])) for p in body["points"]]


async def _as_of_values(
    client: httpx.AsyncClient, headers: Headers, portfolio_id: str, moment: datetime
) -> dict[str, Decimal]:
    """Market value per currency of the consolidated holdings at `moment`, as the holdings route says."""
    response = await client.get(
        f"/v1/portfolios/{portfolio_id}/holdings", params={"as_of": moment.isoformat()}, headers=headers
    )
    assert response.status_code == 200, response.text
    totals: dict[str, Decimal] = {}
    for line in response.json():
        if line["market_value"] is not None:
            totals[line["currency"]] = totals.get(line["currency"], Decimal(0)) + Decimal(
                line["market_value"]
            )
    return totals


@pytest.mark.asyncio
async def test_accounts_add_up_per_currency_and_each_keeps_its_last_value_between_its_syncs(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, ledger: Ledger
) -> None:
    other = await new_account(client, alice, portfolio_id, label="US")
    await ledger.apply_batch([snapshot(account_id, at(1), holding("TCS", "10", last_price="3500.5"))])
    await ledger.apply_batch(
        [snapshot(other, at(2), holding("AAPL", "3", last_price="190.25", exchange="NASDAQ", currency="USD"))]
    )
    await ledger.apply_batch(
        [
            snapshot(
                account_id,
                at(3),
                holding("TCS", "10", last_price="3600"),
                holding("INFY", "4", last_price="1500"),
                holding("UNPRICED", "7"),
            )
        ]
    )

    body = await _valuations(client, alice, portfolio_id, until=at(4))

    assert datetime.fromisoformat(body["since"]) == at(1)
    assert _points(body) == [
        (at(1), "INR", Decimal("35005")),
        (at(2), "INR", Decimal("35005")),  # the INR account did not sync: its value carries on
        (at(2), "USD", Decimal("570.75")),
        (at(3), "INR", Decimal("42000")),
        (at(3), "USD", Decimal("570.75")),
    ]


@pytest.mark.asyncio
async def test_each_point_is_what_the_as_of_holdings_at_its_time_are_worth_however_few_points(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, ledger: Ledger
) -> None:
    other = await new_account(client, alice, portfolio_id, label="Second")
    for hour in range(1, 21):
        await ledger.apply_batch(
            [snapshot(account_id, at(hour), holding("TCS", "10", last_price=str(3000 + hour)))]
        )
        if hour % 3 == 0:
            await ledger.apply_batch(
                [snapshot(other, at(hour + 0.5), holding("INFY", str(hour), last_price="10"))]
            )

    body = await _valuations(client, alice, portfolio_id, since=at(0), until=at(21), points=4)

    points = _points(body)
    assert 1 < len(points) <= 4
    assert [moment for moment, _, _ in points] == sorted({moment for moment, _, _ in points})
    for moment, currency, value in points:
        assert {currency: value} == await _as_of_values(client, alice, portfolio_id, moment)
    assert points[-1] == (at(20), "INR", Decimal(10 * 3020 + 18 * 10))


@pytest.mark.asyncio
async def test_the_range_starts_from_what_was_held_before_it(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, ledger: Ledger
) -> None:
    await ledger.apply_batch([snapshot(account_id, at(1), holding("TCS", "10", last_price="100"))])
    await ledger.apply_batch([snapshot(account_id, at(5), holding("TCS", "10", last_price="110"))])
    await ledger.apply_batch([snapshot(account_id, at(9), holding("TCS", "10", last_price="120"))])

    body = await _valuations(client, alice, portfolio_id, since=at(4), until=at(6))

    assert _points(body) == [(at(4), "INR", Decimal("1000")), (at(5), "INR", Decimal("1100"))]


@pytest.mark.asyncio
async def test_a_currency_no_longer_held_is_worth_zero_and_held_snapshots_never_count(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, ledger: Ledger
) -> None:
    four = [holding(symbol, "1", last_price="100") for symbol in ("A", "B", "C", "D")]
    await ledger.apply_batch(
        [snapshot(account_id, at(1), *four, holding("AAPL", "1", "1", "5", currency="USD"))]
    )
    await ledger.apply_batch([snapshot(account_id, at(2), *four)])
    await ledger.apply_batch([snapshot(account_id, at(3), holding("A", "1", last_price="999"))])  # held
    late = snapshot(account_id, at(1.5), *four[:3], holding("D", "1", last_price="150"))
    await ledger.apply_batch([late])

    body = await _valuations(client, alice, portfolio_id, until=at(4))

    assert _points(body) == [
        (at(1), "INR", Decimal("400")),
        (at(1), "USD", Decimal("5")),
        (at(1.5), "INR", Decimal("450")),  # a late snapshot is history like any other
        (at(1.5), "USD", Decimal("0")),
        (at(2), "INR", Decimal("400")),
        (at(2), "USD", Decimal("0")),
    ]


@pytest.mark.asyncio
async def test_a_portfolio_never_synced_has_no_points(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str
) -> None:
    body = await _valuations(client, alice, portfolio_id)

    assert body["since"] is None and body["points"] == []


@pytest.mark.asyncio
async def test_another_users_portfolio_is_not_found(
    client: httpx.AsyncClient, bob: Headers, portfolio_id: str, account_id: str, ledger: Ledger
) -> None:
    await ledger.apply_batch([snapshot(account_id, at(1), holding("TCS", "10", last_price="100"))])

    response = await client.get(f"/v1/portfolios/{portfolio_id}/valuations", headers=bob)

    assert response.status_code == 404
    assert "TCS" not in response.text and "1000" not in response.text


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"since": at(2).isoformat(), "until": at(1).isoformat()}, "since"),
        ({"since": at(1).isoformat(), "until": at(1).isoformat()}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-05-04T09:00:00"}, "until"),  # no zone
        ({"points": "0"}, "points"),
        ({"points": "501"}, "points"),
    ],
)
async def test_a_range_it_cannot_use_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, params: dict[str, str], where: str
) -> None:
    response = await client.get(f"/v1/portfolios/{portfolio_id}/valuations", params=params, headers=alice)

    assert response.status_code == 422, response.text
    assert [problem["loc"] for problem in response.json()["detail"]] == [["query", where]]
