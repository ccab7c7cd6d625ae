"""The simulated broker: the demo's and the benchmarks' broker, needing no network or account.

Deterministic per account: the same account always holds the same instruments and quantities;
last prices drift per minute. Latency and failure rate come from settings. An account's optional
credential `market` (`in`: NSE, INR; `us`: US exchanges, USD) keeps it to one market, as a real
broker account would be; without it, it holds from both.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from pydantic import TypeAdapter, ValidationError

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    InvalidResponse,
    TransientBrokerError,
)
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import AdapterContext, register_broker
from shared.brokers import SIM
from shared.events import AssetType, Holding

CODE = SIM.code

# (symbol, exchange, isin, currency, asset type, reference price)
_UNIVERSE: tuple[tuple[str, str, str | None, str, AssetType, str], ...] = (
    ("TCS", "NSE", "INE467B01029", "INR", AssetType.EQUITY, "3850.00"),
    ("INFY", "NSE", "INE009A01021", "INR", AssetType.EQUITY, "1540.50"),
    ("RELIANCE", "NSE", "INE002A01018", "INR", AssetType.EQUITY, "2890.10"),
    ("HDFCBANK", "NSE", "INE040A01034", "INR", AssetType.EQUITY, "1645.75"),
    ("NIFTYBEES", "NSE", "INF204KB14I2", "INR", AssetType.ETF, "262.35"),
    ("AAPL", "NASDAQ", "US0378331005", "USD", AssetType.EQUITY, "228.40"),
    ("MSFT", "NASDAQ", "US5949181045", "USD", AssetType.EQUITY, "415.20"),
    ("GOOGL", "NASDAQ", "US02079K3059", "USD", AssetType.EQUITY, "171.05"),
    ("VTI", "NYSEARCA", "US9229087690", "USD", AssetType.ETF, "282.90"),
    ("BND", "NASDAQ", "US9219378356", "USD", AssetType.BOND, "72.45"),
)


class SimulatedBroker:
    def __init__(
        self, *, latency_s: float, failure_rate: float, limiter: BrokerLimiter | None = None
    ) -> None:
        self._latency_s = latency_s
        self._failure_rate = failure_rate
        self._limiter = limiter

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        if self._limiter is not None:
            await self._limiter.requests.acquire()  # one simulated API call per sync
        if self._latency_s:
            await asyncio.sleep(self._latency_s)  # stands in for the broker's network round trip
        if self._failure_rate and random.random() < self._failure_rate:
            raise TransientBrokerError("simulated broker: injected failure")
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        return holdings_answer(simulated_holdings(account, minute=minute))

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_in(answer)

    async def aclose(self) -> None:
        return None


MARKET_CURRENCIES = {"in": "INR", "us": "USD"}
_HOLDINGS = TypeAdapter(list[Holding])


def holdings_answer(holdings: Sequence[Holding]) -> BrokerAnswer:
    """The simulated broker's answer: its holdings as a JSON array of Holding objects."""
    return BrokerAnswer(status_code=200, body=_HOLDINGS.dump_json(list(holdings)))


def holdings_in(answer: BrokerAnswer) -> list[Holding]:
    """The holdings of a `holdings_answer`, or InvalidResponse."""
    try:
        return _HOLDINGS.validate_json(answer.body)
    except ValidationError as exc:
        problems = exc.error_count()
        raise InvalidResponse(f"{CODE}: answer is not a list of holdings ({problems} errors)") from None


def simulated_holdings(account: AccountContext, *, minute: datetime) -> list[Holding]:
    market = account.credentials.get("market", "").strip().lower()
    if market and market not in MARKET_CURRENCIES:
        raise AuthRejected(f"{CODE}: credential 'market' must be one of {', '.join(MARKET_CURRENCIES)}")
    universe = [i for i in _UNIVERSE if not market or i[3] == MARKET_CURRENCIES[market]]
    picker = random.Random(account.account_id.int)
    drift = random.Random(account.account_id.int ^ int(minute.timestamp()))
    holdings = []
    for symbol, exchange, isin, currency, asset_type, reference in picker.sample(
        universe, k=picker.randint(3, min(6, len(universe)))
    ):
        average = Decimal(reference) * Decimal(picker.randint(80, 110)) / 100
        last = Decimal(reference) * Decimal(drift.randint(950, 1050)) / 1000
        holdings.append(
            Holding(
                symbol=symbol,
                exchange=exchange,
                isin=isin,
                currency=currency,
                asset_type=asset_type,
                quantity=Decimal(picker.randint(1, 400)),
                average_price=average.quantize(Decimal("0.01")),
                last_price=last.quantize(Decimal("0.01")),
            )
        )
    return holdings


# No real broker behind it: limits generous enough for the benchmarks, overridable by BROKER_LIMITS.
@register_broker(SIM)
def create(context: AdapterContext) -> SimulatedBroker:
    settings = context.settings
    return SimulatedBroker(
        latency_s=settings.simulated_latency_ms / 1000,
        failure_rate=settings.simulated_failure_rate,
        limiter=context.limiter,
    )
