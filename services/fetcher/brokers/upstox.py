"""Upstox (API v2): an account's long-term holdings, from `GET /portfolio/long-term-holdings`.

Credentials (`account.credentials`):
    access_token   the OAuth access token of the user (Upstox issues it per login; it expires daily).

Published documentation this adapter follows:
    https://upstox.com/developer/api-documentation/get-holdings
        path, required headers (`Authorization: Bearer {access_token}`, `Accept: application/json`),
        the 200 sample body and its field descriptions
    https://upstox.com/developer/api-documentation/example-code/portfolio/get-holdings
        the same request as sample code (only Accept and Authorization are sent)
    https://upstox.com/developer/api-documentation/response-structure
        the envelopes: `{"status": "success", "data": ...}` and
        `{"status": "error", "errors": [{"error_code", "message", "property_path", "invalid_value"}]}`
        (the camelCase twins `errorCode`, `propertyPath`, `invalidValue` are sent too, deprecated)
    https://upstox.com/developer/api-documentation/error-codes
        401 "Your API key is wrong or missing", 429 "Too Many Requests", 500, 503; UDAPI100050
        "Invalid token used to access API", UDAPI10005 "Too Many Request Sent", UDAPI100500 ...
    https://upstox.com/developer/api-documentation/rate-limiting
        per user, per API: standard APIs 50 requests/second, 500/minute, 2000/30 minutes

What the documentation does not say, and what this adapter does about it:
- Whether `quantity` already counts `t1_quantity`. The field table calls `quantity` "The total holding
  qty" and `t1_quantity` "Quantity on T+1 day after order execution"; Upstox's help centre says its
  holdings total is demat + T1. We take `quantity` as the total and do not add `t1_quantity`, which
  would count unsettled shares twice if "total" means what it says. A row with `quantity` 0 and
  `t1_quantity` > 0 holds only shares bought and not yet settled: the user holds them, so its quantity
  is the T1 quantity, not zero.
- The instrument type: the payload has none, so every holding is reported as equity (ETFs, bonds and
  gold bonds held in demat included).
- The currency: the payload has none; Upstox holdings are on NSE or BSE, both quoted in INR. Any
  other exchange is refused rather than guessed.
- No Retry-After (or any rate-limit header) is documented; a 429 is RateLimited without a delay.
- The endpoint is not paginated: one request returns every holding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    InvalidResponse,
    RateLimited,
)
from services.fetcher.http import broker_client, send
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import AdapterContext, register_broker
from shared.brokers import UPSTOX
from shared.events import AssetType, Holding

CODE = UPSTOX.code
BASE_URL = UPSTOX.base_url
HOLDINGS_PATH = "/portfolio/long-term-holdings"
[CREDENTIAL_KEY] = UPSTOX.credential_fields  # access_token

# The rate-limiting page: standard APIs (holdings among them) allow 50 requests/second, 500/minute and
# 2000 per 30 minutes, per user and per API. We take the per-second figure for the bucket. It is shared
# by every account this process syncs, so no single user can come near its own limits: one sync is one
# request, and even the 30-minute figure (about 1.1 requests/second per user) is far off. Concurrency
# is not a documented Upstox limit; it is our default for accounts fetched at once.
# Caveat: the figures were read from several write-ups quoting that page, not from a copy of the page
# itself; some older ones quote 25/250/1000. Recheck the page when this adapter is next touched.
LIMITS = UPSTOX.adapter_limits()

# error-codes page: codes that mean the token (or the app it was issued to) is not accepted.
_AUTH_ERROR_CODES = frozenset(
    {
        "UDAPI100050",  # Invalid token used to access API
        "UDAPI100016",  # Invalid Credentials
        "UDAPI100067",  # The API you are trying to access is not permitted with an extended_token
        "UDAPI100073",  # Your 'client_id' is inactive
    }
)
_RATE_LIMIT_ERROR_CODE = "UDAPI10005"  # Too Many Request Sent

# The payload names the exchange but no currency; Upstox holdings are Indian equities.
_CURRENCY_BY_EXCHANGE = {"NSE": "INR", "BSE": "INR"}

_MAX_BROKER_TEXT = 300


class _UpstoxHolding(BaseModel):
    """One entry of `data[]` as the get-holdings page documents it.

    Strict: numbers must be JSON numbers (parsed to Decimal, never float) and text must be strings.
    Fields we build a Holding from are required; the others may be absent or null but, when present,
    must have their documented type. Unknown fields are ignored: Upstox adds fields over time.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    isin: str | None = None
    trading_symbol: str | None = None
    tradingsymbol: str | None = None
    exchange: str
    quantity: Decimal
    average_price: Decimal
    last_price: Decimal
    t1_quantity: Decimal | None = None
    instrument_token: str | None = None
    company_name: str | None = None
    product: str | None = None
    cnc_used_quantity: Decimal | None = None
    collateral_type: str | None = None
    collateral_quantity: Decimal | None = None
    collateral_update_quantity: Decimal | None = None
    haircut: Decimal | None = None
    close_price: Decimal | None = None
    pnl: Decimal | None = None
    day_change: Decimal | None = None
    day_change_percentage: Decimal | None = None


class _HoldingsResponse(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    status: Literal["success"]
    data: list[_UpstoxHolding]


class _Error(BaseModel):
    """One entry of `errors[]`; snake_case is current, camelCase the deprecated twin."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    error_code: str | None = None
    deprecated_error_code: str | None = Field(default=None, alias="errorCode")
    message: str | None = None

    @property
    def code(self) -> str | None:
        return self.error_code or self.deprecated_error_code


class _ErrorResponse(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    status: str
    errors: list[_Error] = Field(default_factory=list)


class UpstoxBroker:
    """Fetches one Upstox account's holdings per call; one HTTP client for all accounts."""

    def __init__(self, *, base_url: str, limiter: BrokerLimiter) -> None:
        self._client = broker_client(base_url, limiter, headers={"Accept": "application/json"})

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        token = account.credentials.get(CREDENTIAL_KEY)
        if not token:
            raise AuthRejected(f"{CODE}: the account's credentials have no {CREDENTIAL_KEY!r}")
        request = self._client.build_request(
            "GET", HOLDINGS_PATH, headers={"Authorization": f"Bearer {token}"}
        )
        response = await send(self._client, request, broker=CODE)
        secrets = tuple(value for value in account.credentials.values() if value)
        answer = BrokerAnswer(status_code=response.status_code, body=response.content, secrets=secrets)
        if response.status_code != 200:
            raise _error_for(answer)
        return answer

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        body = _decimal_json(answer)
        if isinstance(body, dict) and body.get("status") == "error":
            raise _error_for(answer)  # an error envelope under a 200
        try:
            parsed = _HoldingsResponse.model_validate(body)
        except ValidationError as exc:
            raise InvalidResponse(
                f"{CODE}: holdings response off the documented schema: {_problems(exc)}"
            ) from None
        return [_holding(entry, index) for index, entry in enumerate(parsed.data)]

    async def aclose(self) -> None:
        await self._client.aclose()


def _holding(entry: _UpstoxHolding, index: int) -> Holding:
    symbol = entry.trading_symbol or entry.tradingsymbol
    if not symbol:
        raise InvalidResponse(f"{CODE}: data[{index}] has neither trading_symbol nor tradingsymbol")
    currency = _CURRENCY_BY_EXCHANGE.get(entry.exchange)
    if currency is None:
        raise InvalidResponse(
            f"{CODE}: data[{index}] ({symbol}) is on exchange {entry.exchange[:32]!r}, "
            "whose currency the payload does not give"
        )
    try:
        return Holding(
            symbol=symbol,
            exchange=entry.exchange,
            isin=entry.isin or None,
            currency=currency,
            asset_type=AssetType.EQUITY,  # the payload carries no instrument type
            quantity=_quantity(entry),
            average_price=entry.average_price,
            last_price=entry.last_price,
        )
    except ValidationError as exc:
        raise InvalidResponse(
            f"{CODE}: data[{index}] ({symbol}) is not a valid holding: {_problems(exc)}"
        ) from None


def _quantity(entry: _UpstoxHolding) -> Decimal:
    """`quantity`, "the total holding qty" (t1_quantity is not added on top, see above); when it is 0
    but `t1_quantity` is not, the row is shares bought and awaiting settlement: those are held."""
    if entry.quantity == 0 and entry.t1_quantity is not None and entry.t1_quantity > 0:
        return entry.t1_quantity
    return entry.quantity


def _decimal_json(answer: BrokerAnswer) -> Any:
    """The body with every JSON number as Decimal, so no price ever passes through a float.

    Not `http.decimal_json`: this model wants whole numbers as Decimal too, and a NaN is left for it
    to refuse, so that the error names the field."""
    try:
        return json.loads(answer.body, parse_float=Decimal, parse_int=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidResponse(f"{CODE}: response is not JSON (HTTP {answer.status_code})") from None


def _error_for(answer: BrokerAnswer) -> Exception:
    """The typed error for a non-200 answer or an error envelope (429 and 5xx were raised by `send`)."""
    errors = _broker_errors(answer.body)
    codes = {error.code for error in errors}
    detail = _redact("; ".join(f"{error.code}: {error.message}" for error in errors), answer.secrets)
    where = f"HTTP {answer.status_code}" + (f" {detail}" if detail else "")
    if answer.status_code == 401 or codes & _AUTH_ERROR_CODES:
        return AuthRejected(f"{CODE}: access token rejected ({where})")
    if _RATE_LIMIT_ERROR_CODE in codes:
        return RateLimited(f"{CODE}: rate limited ({where})")
    # A 4xx the docs do not tie to the token: the request or the API changed, not the account.
    return InvalidResponse(f"{CODE}: unexpected answer to the holdings request ({where})")


def _broker_errors(body: bytes) -> list[_Error]:
    try:
        return _ErrorResponse.model_validate_json(body).errors
    except ValidationError:
        return []  # not the documented envelope: the status code alone decides


def _redact(text: str, secrets: Iterable[str]) -> str:
    """Broker text, shortened, with any credential value it echoes blanked out."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text[:_MAX_BROKER_TEXT]


def _problems(exc: ValidationError) -> str:
    # Locations and messages only: pydantic's input values could be large or echo a secret.
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:5]
    )


@register_broker(UPSTOX)
def create(context: AdapterContext) -> UpstoxBroker:
    return UpstoxBroker(base_url=context.base_url, limiter=context.limiter)


__all__ = ["BASE_URL", "CODE", "LIMITS", "UpstoxBroker", "create"]
