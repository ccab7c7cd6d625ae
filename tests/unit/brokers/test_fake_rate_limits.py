"""The fakes enforce their broker's documented limit, per the key the broker counts by, answer its
429 past it and count those answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from starlette.types import ASGIApp

from services.fetcher.testing import serve_fake
from tests.fakes import alpaca, dhan, upstox, zerodha
from tests.fakes.rate_windows import FixedWindowLimit


@dataclass(frozen=True)
class Case:
    make: Callable[[], ASGIApp]
    path: str
    headers: Callable[[str], dict[str, str]]  # a request's headers for key `n`
    limit: int
    error_marker: str  # in the broker's own 429 body


CASES = {
    "zerodha": Case(
        lambda: zerodha.ZerodhaFake(),
        zerodha.HOLDINGS_PATH,
        lambda key: {"X-Kite-Version": "3", "Authorization": f"token {key}:{zerodha.ACCESS_TOKEN}"},
        zerodha.RATE_LIMIT_PER_S,
        "NetworkException",
    ),
    "alpaca": Case(
        lambda: alpaca.AlpacaFake(key_id="key", secret_key="secret"),
        "/v2/positions",
        lambda key: {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": "secret"},
        alpaca.RATE_LIMIT,
        "rate limit exceeded",
    ),
    "upstox": Case(
        lambda: upstox.UpstoxFake(access_token="token"),
        upstox.HOLDINGS_PATH,
        lambda key: {"Authorization": f"Bearer {key}", "Accept": "application/json"},
        upstox.RATE_LIMIT_PER_S,
        "UDAPI10005",
    ),
    "dhan": Case(
        lambda: dhan.DhanFake(),
        "/v2/holdings",
        lambda key: {"access-token": key},
        dhan.RATE_LIMIT_PER_S,
        "DH-904",
    ),
}


@pytest.mark.parametrize("broker", sorted(CASES))
async def test_a_fake_answers_429_past_its_documented_limit_per_key_and_counts_them(broker: str) -> None:
    case = CASES[broker]
    fake = case.make()
    limit: FixedWindowLimit = fake.rate_limit  # type: ignore[attr-defined]
    async with serve_fake(fake) as base_url, httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        # Twice the limit and one: within at most two of the fake's windows, so one at least is over.
        answers = await asyncio.gather(
            *(client.get(case.path, headers=case.headers("key-a")) for _ in range(2 * case.limit + 1))
        )
        refused = [a for a in answers if a.status_code == 429]
        assert refused and all(case.error_marker in a.text for a in refused)
        assert limit.rejected == len(refused)
        # Another key has a budget of its own.
        other = await client.get(case.path, headers=case.headers("key-b"))
        assert other.status_code != 429
