"""Alpaca (Trading API v2): an account's open positions as holdings.

One request per sync, `GET /v2/positions`: "Retrieves a list of the account's open positions", an
unpaginated JSON array of Position objects whose numbers are all strings ("Decimal numbers are
returned as strings to preserve full precision"), so no number ever passes through a float here.

Credentials (`account.credentials`):
    key_id       the API key ID, sent as `APCA-API-KEY-ID`
    secret_key   the API secret key, sent as `APCA-API-SECRET-KEY`
    environment  optional, `live` (default) or `paper`. Paper trading "uses a different domain and
                 different credentials from the live API", so the key pair decides it. The default
                 is live because this adapter only reads positions (nothing can be traded by
                 mistake) and portfolios are synced to follow real money; paper keys sent to the
                 live host come back as a 401, an AuthRejected that says to check this setting.
When settings override the base URL (BROKER_BASE_URLS, e.g. a test fake or a proxy), both
environments use the override.

Normalisation:
- symbol as given, surrounding spaces stripped (the published sample says `"AAPL "`); no ISIN (the
  payload has none).
- asset_type from `asset_class`: `us_equity` -> EQUITY, `crypto` -> CRYPTO, anything else (e.g.
  `us_option`) -> OTHER. The payload does not tell ETFs from stocks; they stay EQUITY.
- currency USD for every position: the Position entity gives its amounts "in dollar(s)", Trading API
  accounts are USD accounts, and crypto positions are USD-quoted pairs (`BTCUSD` in the sample).
  Alpaca's local-currency trading, which adds a `usd` block to positions, is a Broker API feature; a
  position carrying one is refused rather than mislabelled.
- quantity is `qty` as reported. "Short positions will be reported with negative quantities", so a
  short stays negative; a `side` that contradicts the sign of `qty` is an invalid response.
- average_price is `avg_entry_price`, last_price `current_price` (absent or null -> None). Holding
  prices carry 18 decimal places; Alpaca's computed averages could carry more, so prices beyond
  18 places are rounded half-even to 18. Quantities are never
  rounded: one finer than the Holding can carry is an invalid response.

Failures: 401 and 403 -> AuthRejected; 429 -> RateLimited (wait until `X-Ratelimit-Reset`, or a
`Retry-After` if one is sent); 5xx and network errors -> TransientBrokerError (via `send`); any other
status or a body off the documented schema -> InvalidResponse. No message carries a credential.

Limits: "The rate limit is 200 requests every minute per API key", "per account" in Alpaca's support
article. One request per sync, so rate_per_s = 200/60. Alpaca documents no burst and no concurrency
cap: burst 1 spaces requests evenly, the project default of 10 accounts at once is kept.

Documentation used:
- Trading API reference (authentication headers, live and paper domains, rate limit, short positions
  reported with negative quantities, numbers as strings):
  https://alpaca.markets/docs/api-references/trading-api/
- Positions and the Position entity: https://docs.alpaca.markets/reference/positions
- Endpoint list and entity sources: github.com/alpacahq/alpaca-docs, data/webapi/endpoints/positions.yaml,
  data/webapi/entities/position.yaml and position-crypto.yaml (crypto Positions page)
- Servers "Paper" and "Live": https://docs.alpaca.markets/us/v1.1/openapi/trading-api.json
- Rate limit per account: https://alpaca.markets/support/usage-limit-api-calls/
- 401 for keys not accepted for the environment: https://alpaca.markets/learn/how-to-fix-common-trading-api-errors-at-alpaca
- X-Ratelimit-Limit / -Remaining / -Reset on every response (Alpaca staff; not in the reference):
  https://forum.alpaca.markets/t/executing-orders/12029
- Local-currency trading and its `usd` block: https://docs.alpaca.markets/docs/local-currency-trading-lct
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, PlainValidator, TypeAdapter, ValidationError

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    InvalidResponse,
    RateLimited,
)
from services.fetcher.http import broker_client, retry_after_seconds, send
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import AdapterContext, register_broker
from shared.brokers import ALPACA
from shared.events import AssetType, Holding
from shared.numeric import DECIMAL_PLACES

CODE = ALPACA.code
LIVE_URL = ALPACA.base_url
PAPER_URL = "https://paper-api.alpaca.markets"
POSITIONS_PATH = "/v2/positions"
KEY_ID_HEADER = "APCA-API-KEY-ID"
SECRET_KEY_HEADER = "APCA-API-SECRET-KEY"
ENVIRONMENTS = ("live", "paper")

_ASSET_TYPES = {"us_equity": AssetType.EQUITY, "crypto": AssetType.CRYPTO}
_PRICE_PLACES = DECIMAL_PLACES  # what a Holding's price may carry (shared.numeric)
_PRICE_QUANTUM = Decimal(1).scaleb(-_PRICE_PLACES)
_DECIMAL_TEXT = re.compile(r"-?\d+(?:\.\d+)?")


def _decimal_text(value: object) -> Decimal:
    # Documented as strings; a JSON number (already a float to any parser) is off the schema.
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        raise ValueError("expected a decimal number written as a string")
    return Decimal(value)


DecimalText = Annotated[Decimal, PlainValidator(_decimal_text)]


class Position(BaseModel):
    """One element of the `GET /v2/positions` array; fields Alpaca adds later are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    asset_id: uuid.UUID
    symbol: str
    exchange: str
    asset_class: str
    avg_entry_price: DecimalText
    qty: DecimalText
    side: Literal["long", "short"]
    current_price: DecimalText | None = None
    # Documented but unused: still validated, so a malformed payload is not half-trusted.
    qty_available: DecimalText | None = None
    market_value: DecimalText | None = None
    cost_basis: DecimalText | None = None
    unrealized_pl: DecimalText | None = None
    unrealized_plpc: DecimalText | None = None
    unrealized_intraday_pl: DecimalText | None = None
    unrealized_intraday_plpc: DecimalText | None = None
    lastday_price: DecimalText | None = None
    change_today: DecimalText | None = None
    asset_marginable: bool | None = None
    usd: dict[str, Any] | None = None


_POSITIONS = TypeAdapter(list[Position])


class AlpacaBroker:
    """Fetches positions from the live or paper host, as each account's credentials say."""

    def __init__(self, *, live_url: str, paper_url: str, limiter: BrokerLimiter) -> None:
        self.live_url = live_url
        self.paper_url = paper_url
        self._limiter = limiter
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        key_id, secret_key = (_credential(account.credentials, key) for key in ALPACA.credential_fields)
        base_url = self._base_url(account.credentials)
        client = self._client(base_url)
        request = client.build_request(
            "GET", POSITIONS_PATH, headers={KEY_ID_HEADER: key_id, SECRET_KEY_HEADER: secret_key}
        )
        # Before `send` maps the 429 (Retry-After only): Alpaca says when to retry in X-Ratelimit-Reset.
        response = await send(client, request, broker=CODE, inspect=_raise_when_rate_limited)
        if response.status_code in (401, 403):
            raise AuthRejected(
                f"alpaca: {base_url} rejected the API key pair (HTTP {response.status_code}"
                f"{_broker_message(response, (key_id, secret_key))}); check that the keys are current and "
                "belong to the environment the account's credentials name"
            )
        if response.status_code != 200:
            raise InvalidResponse(
                f"alpaca: unexpected HTTP {response.status_code} from GET {POSITIONS_PATH}"
                f"{_broker_message(response, (key_id, secret_key))}"
            )
        return BrokerAnswer(status_code=200, body=response.content, secrets=(key_id, secret_key))

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        return holdings_from(answer.body)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _base_url(self, credentials: Mapping[str, str]) -> str:
        environment = (credentials.get("environment") or "live").strip().lower()
        if environment not in ENVIRONMENTS:
            raise AuthRejected("alpaca: the credentials' 'environment' must be 'live' or 'paper'")
        return self.paper_url if environment == "paper" else self.live_url

    def _client(self, base_url: str) -> httpx.AsyncClient:
        client = self._clients.get(base_url)
        if client is None:
            client = broker_client(base_url, self._limiter)
            self._clients[base_url] = client
        return client


def holdings_from(body: bytes) -> list[Holding]:
    """Every position of a `GET /v2/positions` body as a Holding, or InvalidResponse saying why."""
    try:
        positions = _POSITIONS.validate_json(body)
    except ValidationError as exc:
        reasons = _reasons(exc)
        raise InvalidResponse(f"alpaca: positions do not fit the documented schema: {reasons}") from None
    return [_holding(index, position) for index, position in enumerate(positions)]


def _holding(index: int, position: Position) -> Holding:
    where = f"position {index} ({position.symbol.strip()!r})"
    if position.usd is not None:
        raise InvalidResponse(f"alpaca: {where} is priced in a local currency (it has a 'usd' block)")
    if position.qty != 0 and (position.side == "short") != (position.qty < 0):
        raise InvalidResponse(f"alpaca: {where} has side {position.side!r} but qty {position.qty}")
    try:
        return Holding(
            symbol=position.symbol.strip(),
            exchange=position.exchange,
            isin=None,
            currency="USD",
            asset_type=_ASSET_TYPES.get(position.asset_class, AssetType.OTHER),
            quantity=position.qty,
            average_price=_price(position.avg_entry_price),
            last_price=None if position.current_price is None else _price(position.current_price),
        )
    except ValidationError as exc:
        raise InvalidResponse(f"alpaca: {where} does not fit a holding: {_reasons(exc)}") from None


def _price(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_PRICE_PLACES:
        return value.quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)
    return value


def _credential(credentials: Mapping[str, str], key: str) -> str:
    value = credentials.get(key, "")
    if not value:
        raise AuthRejected(f"alpaca: the account's credentials have no {key!r}")
    return value


async def _raise_when_rate_limited(response: httpx.Response) -> None:
    if response.status_code == 429:
        raise RateLimited(
            "alpaca: rate limited (HTTP 429; Alpaca allows 200 requests per minute per account)",
            retry_after_s=_retry_after(response.headers),
        )


def _retry_after(headers: httpx.Headers) -> float | None:
    seconds = retry_after_seconds(headers)
    if seconds is not None:
        return seconds
    try:
        reset_at = float(headers["x-ratelimit-reset"])  # epoch seconds of the next window
    except (KeyError, ValueError):
        return None
    return max(0.0, reset_at - time.time())


def _broker_message(response: httpx.Response, secrets: Sequence[str]) -> str:
    """`: <message>` from Alpaca's error body, with any credential blanked out; '' if it has none."""
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        return ""
    for secret in secrets:
        message = message.replace(secret, "***")
    return f": {message[:200]}"


def _reasons(exc: ValidationError) -> str:
    # loc and msg only: pydantic's full text would quote the offending input.
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:5]
    )


@register_broker(ALPACA)
def create(context: AdapterContext) -> AlpacaBroker:
    if context.base_url == LIVE_URL:
        return AlpacaBroker(live_url=LIVE_URL, paper_url=PAPER_URL, limiter=context.limiter)
    # An overridden base URL (a fake, a proxy) serves both environments.
    return AlpacaBroker(live_url=context.base_url, paper_url=context.base_url, limiter=context.limiter)
