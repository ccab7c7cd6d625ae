"""The demo's portfolios hold what their names say, and its simulated accounts keep to one market."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.demo import DemoUser, _banner, run_demo
from services.fetcher.adapter import AccountContext, AuthRejected
from services.fetcher.brokers.simulated import simulated_holdings
from shared.settings import Settings

MINUTE = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def test_a_simulated_accounts_market_decides_its_instruments() -> None:
    for _ in range(30):
        account_id = uuid.uuid4()
        us = simulated_holdings(AccountContext(account_id, {"market": "us"}), minute=MINUTE)
        india = simulated_holdings(AccountContext(account_id, {"market": "IN"}), minute=MINUTE)
        assert {h.currency for h in us} == {"USD"} and {h.exchange for h in us} <= {"NASDAQ", "NYSEARCA"}
        assert {(h.currency, h.exchange) for h in india} == {("INR", "NSE")}
    mixed = [simulated_holdings(AccountContext(uuid.uuid4(), {}), minute=MINUTE) for _ in range(30)]
    assert {h.currency for holdings in mixed for h in holdings} == {"INR", "USD"}  # no market: both


def test_an_unknown_market_is_a_credential_error() -> None:
    with pytest.raises(AuthRejected, match="market"):
        simulated_holdings(AccountContext(uuid.uuid4(), {"market": "mars"}), minute=MINUTE)


async def test_the_demos_us_portfolio_shows_only_us_holdings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_demo(Settings(), cycles=1, host="127.0.0.1", port=0, database=tmp_path / "demo.db") == 0

    out = capsys.readouterr().out
    sections = dict(re.findall(r"\n([A-Za-z][^\n]*)\nSymbol[^\n]*\n-[^\n]*\n((?:[^\n]+\n?)+)", out))
    assert set(sections) == {"India long-term", "US stocks"}, out
    currencies = {name: {line.split()[-1] for line in rows.splitlines()} for name, rows in sections.items()}
    assert currencies == {"India long-term": {"INR"}, "US stocks": {"USD"}}


def test_demo_serve_prints_the_dashboards_address_first() -> None:
    user = DemoUser(token="t", portfolios={"US stocks": "p"})

    banner = _banner("127.0.0.1", 8000, user, "Demo data: 1 user", "operator-token")

    assert banner.splitlines()[0].startswith("Dashboard: http://127.0.0.1:8000/ui/")
