"""`?as_of=` holdings over the history the real ledger writes: late snapshots count, held and
dismissed ones never were the account's positions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from services.ledger.handlers import Ledger
from shared.events import HoldingSnapshot
from tests.unit.api.conftest import Headers, new_account, new_portfolio
from tests.unit.api.ledger_feed import at, holding, snapshot


def _four(account_id: str, taken_at: datetime, tcs: str) -> HoldingSnapshot:
    """Four instruments, so that keeping only one of them makes a snapshot suspicious (held)."""
    return snapshot(
        account_id,
        taken_at,
        holding("TCS", tcs, last_price="3500"),
        holding("INFY", "5"),
        holding("WIPRO", "8"),
        holding("HDFC", "3"),
    )


async def _history(ledger: Ledger, account_id: str) -> dict[str, HoldingSnapshot]:
    """Snapshots applied one batch at a time, in arrival order; statuses as the ledger decides them."""
    history = {
        "S1": _four(account_id, at(1), "10"),  # applied: the first
        "S2": _four(account_id, at(3), "20"),  # applied
        "L": _four(account_id, at(2), "15"),  # late: arrives after S2, taken before it
        "H1": snapshot(account_id, at(4), holding("TCS", "99")),  # held: 1 of 4 instruments kept
        "S4": _four(account_id, at(5), "25"),  # applied; contradicts H1, which is dismissed
        "H2": snapshot(account_id, at(6), holding("INFY", "77")),  # held, and still held
    }
    for event in history.values():
        await ledger.apply_batch([event])
    return history


async def _account_holdings(
    client: httpx.AsyncClient, headers: Headers, account_id: str, as_of: datetime | None
) -> list[dict[str, Any]]:
    params = {} if as_of is None else {"as_of": as_of.isoformat()}
    response = await client.get(f"/v1/accounts/{account_id}/holdings", params=params, headers=headers)
    assert response.status_code == 200, response.text
    lines: list[dict[str, Any]] = response.json()
    return lines


@pytest.mark.asyncio
async def test_the_history_has_every_status(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger
) -> None:
    history = await _history(ledger, account_id)

    response = await client.get(f"/v1/accounts/{account_id}/snapshots", headers=alice)

    assert response.status_code == 200
    listed = [(s["id"], s["status"], s["holdings_count"]) for s in response.json()["items"]]
    assert listed == [
        (str(history["H2"].event_id), "held", 1),
        (str(history["S4"].event_id), "applied", 4),
        (str(history["H1"].event_id), "dismissed", 1),
        (str(history["S2"].event_id), "applied", 4),
        (str(history["L"].event_id), "late", 4),
        (str(history["S1"].event_id), "applied", 4),
    ]
    assert [datetime.fromisoformat(s["taken_at"]) for s in response.json()["items"]] == [
        at(6),
        at(5),
        at(4),
        at(3),
        at(2),
        at(1),
    ]
    limited = await client.get(f"/v1/accounts/{account_id}/snapshots", params={"limit": 2}, headers=alice)
    first_two = [str(history["H2"].event_id), str(history["S4"].event_id)]
    assert [s["id"] for s in limited.json()["items"]] == first_two


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("as_of", "expected", "taken_at"),
    [
        pytest.param(at(0.5), None, None, id="before-the-first-snapshot"),
        pytest.param(at(1), "10", at(1), id="exactly-at-the-first"),
        pytest.param(at(1.5), "10", at(1), id="between-first-and-late"),
        pytest.param(at(2.5), "15", at(2), id="a-late-snapshot-counts"),
        pytest.param(at(3.5), "20", at(3), id="between-second-and-held"),
        pytest.param(at(4.5), "20", at(3), id="a-dismissed-snapshot-does-not-count"),
        pytest.param(at(5.5), "25", at(5), id="after-the-confirming-sync"),
        pytest.param(at(7), "25", at(5), id="a-held-snapshot-does-not-count"),
        pytest.param(None, "25", at(5), id="now"),
    ],
)
async def test_account_holdings_as_of(
    client: httpx.AsyncClient,
    alice: Headers,
    account_id: str,
    ledger: Ledger,
    as_of: datetime | None,
    expected: str | None,
    taken_at: datetime | None,
) -> None:
    await _history(ledger, account_id)

    lines = await _account_holdings(client, alice, account_id, as_of)

    if expected is None:
        assert lines == []
        return
    assert {line["symbol"]: line["quantity"] for line in lines} == {
        "HDFC": "3",
        "INFY": "5",
        "TCS": expected,
        "WIPRO": "8",
    }
    assert {datetime.fromisoformat(line["as_of"]) for line in lines} == {taken_at}
    (tcs,) = (line for line in lines if line["symbol"] == "TCS")
    assert tcs["market_value"] == str(int(expected) * 3500)


@pytest.mark.asyncio
async def test_an_as_of_in_another_zone_means_the_same_instant(
    client: httpx.AsyncClient, alice: Headers, account_id: str, ledger: Ledger
) -> None:
    await _history(ledger, account_id)
    # 11:00 UTC + 5:30 is 16:30 in India: the late snapshot L, taken at exactly that instant.
    in_india = at(2).astimezone(datetime.fromisoformat("2026-01-01T00:00:00+05:30").tzinfo)

    lines = await _account_holdings(client, alice, account_id, in_india)

    assert {line["symbol"]: line["quantity"] for line in lines}["TCS"] == "15"


@pytest.mark.asyncio
@pytest.mark.parametrize("as_of", ["2026-05-04T12:00:00", "yesterday", "2026-13-01T00:00:00Z"])
async def test_an_as_of_without_a_zone_or_not_a_time_is_422(
    client: httpx.AsyncClient, alice: Headers, account_id: str, portfolio_id: str, as_of: str
) -> None:
    for path in (f"/v1/accounts/{account_id}/holdings", f"/v1/portfolios/{portfolio_id}/holdings"):
        response = await client.get(path, params={"as_of": as_of}, headers=alice)

        assert response.status_code == 422, path
        (error,) = response.json()["detail"]
        assert error["loc"] == ["query", "as_of"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("as_of", "expected"),
    [
        pytest.param(at(0.5), {}, id="before-any-snapshot"),
        pytest.param(at(1.5), {"TCS": ("10", {"A": "10"})}, id="only-the-first-account"),
        pytest.param(
            at(2.5),
            {"TCS": ("16", {"A": "15", "B": "1"}), "AAPL": ("2", {"B": "2"})},
            id="late-snapshot-and-second-account",
        ),
        pytest.param(at(4.5), {"TCS": ("23", {"A": "20", "B": "3"})}, id="dismissed-ignored"),
        pytest.param(at(7), {"TCS": ("28", {"A": "25", "B": "3"})}, id="held-ignored"),
        pytest.param(None, {"TCS": ("28", {"A": "25", "B": "3"})}, id="now"),
    ],
)
async def test_portfolio_holdings_as_of(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    ledger: Ledger,
    as_of: datetime | None,
    expected: dict[str, tuple[str, dict[str, str]]],
) -> None:
    """TCS and AAPL move; A's other three instruments never change, and are there from its first."""
    await _history(ledger, account_id)
    second = await new_account(client, alice, portfolio_id)
    elsewhere = await new_account(client, alice, await new_portfolio(client, alice, "Elsewhere"))
    await ledger.apply_batch(
        [
            snapshot(
                second,
                at(2),
                holding("TCS", "1"),
                holding("AAPL", "2", exchange="NASDAQ", currency="USD"),
            ),
            snapshot(second, at(4), holding("TCS", "3")),
            snapshot(elsewhere, at(1), holding("TCS", "1000")),  # another portfolio's
        ]
    )
    names = {account_id: "A", second: "B"}

    params = {} if as_of is None else {"as_of": as_of.isoformat()}
    response = await client.get(f"/v1/portfolios/{portfolio_id}/holdings", params=params, headers=alice)

    assert response.status_code == 200, response.text
    unchanged = (
        {} if not expected else {s: (q, {"A": q}) for s, q in (("HDFC", "3"), ("INFY", "5"), ("WIPRO", "8"))}
    )
    assert {
        line["symbol"]: (
            line["quantity"],
            {names[share["account_id"]]: share["quantity"] for share in line["accounts"]},
        )
        for line in response.json()
    } == expected | unchanged
    assert all(line["currency"] == ("USD" if line["symbol"] == "AAPL" else "INR") for line in response.json())


@pytest.mark.asyncio
async def test_a_late_snapshot_taken_at_the_same_instant_as_an_applied_one_is_not_added_to_it(
    client: httpx.AsyncClient, alice: Headers, account_id: str, portfolio_id: str, ledger: Ledger
) -> None:
    applied = snapshot(account_id, at(1), holding("TCS", "10"))
    same_instant = snapshot(account_id, at(1), holding("TCS", "7"))  # late: not after the positions
    await ledger.apply_batch([applied])
    await ledger.apply_batch([same_instant])

    account = await _account_holdings(client, alice, account_id, at(1.5))
    portfolio = await client.get(
        f"/v1/portfolios/{portfolio_id}/holdings", params={"as_of": at(1.5).isoformat()}, headers=alice
    )

    statuses = await client.get(f"/v1/accounts/{account_id}/snapshots", headers=alice)
    assert {s["id"]: s["status"] for s in statuses.json()["items"]} == {
        str(applied.event_id): "applied",
        str(same_instant.event_id): "late",
    }
    assert [(line["symbol"], line["quantity"]) for line in account] == [("TCS", "10")]
    assert [(line["symbol"], line["quantity"]) for line in portfolio.json()] == [("TCS", "10")]
