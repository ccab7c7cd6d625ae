"""Zerodha Kite Connect v3: the account's equity holdings, from one `GET /portfolio/holdings`.

Published documentation this adapter follows:

- https://kite.trade/docs/connect/v3/portfolio/ — the holdings endpoint, its sample response
  (`{"status": "success", "data": [...]}`), the field table, and the per-holding `mtf` object.
- https://kite.trade/docs/connect/v3/exceptions/ — the error body
  (`{"status": "error", "message": ..., "error_type": ...}`), the exception names, the HTTP codes
  (403 = session expired or invalid, 429 = rate limited, 502/503/504 = OMS or API down), and the
  rate limits (https://kite.trade/docs/connect/v3/exceptions/#api-rate-limit).
- https://kite.trade/docs/connect/v3/changelog/ — every request carries `X-Kite-Version: 3` and
  `Authorization: token api_key:access_token`; the v3 API stays on https://api.kite.trade.
- https://kite.trade/docs/javakiteconnect/v3/com/zerodhatech/models/MTFHolding.html — the fields of
  `mtf` in Zerodha's own Java client (quantity, used_quantity, average_price, value, initial_margin).
- https://github.com/zerodha/kiteconnect-mocks/blob/master/holdings.json — Zerodha's full sample
  response, the one with non-zero `t1_quantity` values.

Credentials (`account.credentials`):

- `api_key`: the Kite Connect app's API key.
- `access_token`: the session token from the login flow; Kite invalidates it every day (and on
  logout), after which every call answers 403 TokenException, reported here as AuthRejected.

Positions (`GET /portfolio/positions`) are left out: the docs call them the "short term" side of the
portfolio (intraday and F&O, the day's trades), while holdings are what sits in the DEMAT account.
Consequence: shares bought with CNC today appear here from the next trading day, as `t1_quantity`.
The endpoint is not paginated: the docs show one response carrying every holding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, StrictStr, ValidationError

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    BrokerError,
    InvalidResponse,
    TransientBrokerError,
)
from services.fetcher.http import broker_client, decimal_json, send
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import AdapterContext, register_broker
from shared.brokers import ZERODHA
from shared.events import AssetType, Holding

CODE = ZERODHA.code
BASE_URL = ZERODHA.base_url
HOLDINGS_PATH = "/portfolio/holdings"
KITE_VERSION = "3"
CREDENTIAL_KEYS = ZERODHA.credential_fields  # api_key, access_token

# Holdings are "long term equity delivery stocks" (portfolio page), and every documented sample
# holding is on NSE or BSE, both Indian exchanges quoting in rupees. Any other exchange is off the
# documented schema rather than guessed at.
_CURRENCY_BY_EXCHANGE = {"NSE": "INR", "BSE": "INR"}

# Holding prices are kept to 8 decimal places (a Holding takes up to 18: shared.numeric).
_PRICE_EXPONENT = -8
_PRICE_QUANTUM = Decimal(1).scaleb(_PRICE_EXPONENT)

# Kite's error_type values that the exceptions page describes as the API failing to reach or
# understand the OMS: trying again later can help.
_TRANSIENT_ERROR_TYPES = frozenset({"NetworkException", "DataException"})


def _json_number(value: object) -> Decimal:
    """A JSON number as parsed with `parse_float=Decimal`: an int or a finite Decimal, never a str."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError("should be a JSON number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("should be a finite number")
    return number


def _price(value: object) -> Decimal:
    number = _json_number(value)
    if number < 0:
        raise ValueError("a price should not be negative")
    return number


_Price = Annotated[Decimal, PlainValidator(_price)]


class _Documented(BaseModel):
    # Brokers add fields: unknown ones are ignored; the ones used here are checked strictly.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class _MtfHolding(_Documented):
    """The Margin Trading Facility part of a holding (`mtf` in the portfolio sample)."""

    quantity: StrictInt
    average_price: _Price


class _KiteHolding(_Documented):
    """One entry of `data`: only the documented fields this adapter needs."""

    tradingsymbol: StrictStr = Field(min_length=1)
    exchange: StrictStr
    isin: StrictStr
    quantity: StrictInt
    t1_quantity: StrictInt
    average_price: _Price
    last_price: _Price
    # Absent from the older samples, present in the current one: optional.
    mtf: _MtfHolding | None = None


class _HoldingsResponse(_Documented):
    status: Literal["success"]
    data: list[_KiteHolding]


class _KiteError(_Documented):
    """The documented error body; `message` and `error_type` may be absent, the rest is reported as is."""

    status: Literal["error"]
    message: StrictStr = ""
    error_type: StrictStr = ""


class ZerodhaKite:
    """Reads one account's holdings through Kite Connect v3; one instance serves every account."""

    def __init__(self, *, base_url: str, limiter: BrokerLimiter) -> None:
        self._client = broker_client(base_url, limiter, headers={"X-Kite-Version": KITE_VERSION})

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        api_key, access_token = _credentials(account.credentials)
        request = self._client.build_request(
            "GET", HOLDINGS_PATH, headers={"Authorization": f"token {api_key}:{access_token}"}
        )
        response = await send(self._client, request, broker=CODE)
        secrets = (api_key, access_token)
        if response.status_code != 200:
            raise _error_from(response.status_code, _decode(response.content), secrets)
        return BrokerAnswer(status_code=200, body=response.content, secrets=secrets)

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        body = _decode(answer.body)
        if _is_error_body(body):
            raise _error_from(answer.status_code, body, answer.secrets)
        if isinstance(body, _Undecodable):
            raise InvalidResponse(f"{CODE}: holdings response is not JSON ({body.reason})")
        try:
            parsed = _HoldingsResponse.model_validate(body)
        except ValidationError as exc:
            raise InvalidResponse(
                f"{CODE}: holdings response off the documented schema: {_first_problem(exc)}"
            ) from None
        return _normalise(parsed.data)

    async def aclose(self) -> None:
        await self._client.aclose()


def _credentials(credentials: Mapping[str, str]) -> tuple[str, str]:
    values = []
    for key in CREDENTIAL_KEYS:
        value = credentials.get(key)
        if not value:
            raise AuthRejected(f"{CODE}: credential {key!r} is missing")
        # It goes into an HTTP header: anything but visible ASCII would break or split the header.
        if not (value.isascii() and value.isprintable()) or any(c.isspace() for c in value):
            raise AuthRejected(f"{CODE}: credential {key!r} is malformed")
        values.append(value)
    return values[0], values[1]


class _Undecodable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _decode(content: bytes) -> Any:
    """The JSON body with every fraction as an exact Decimal; never through float."""
    try:
        return decimal_json(content)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return _Undecodable(type(exc).__name__)


def _is_error_body(body: object) -> bool:
    return isinstance(body, dict) and body.get("status") == "error"


def _error_from(status: int, body: object, secrets: Iterable[str]) -> BrokerError:
    """Map a non-success answer by HTTP status and Kite's `error_type`, as the exceptions page lists them.

    429 and 5xx never get here: `send` already made them RateLimited and TransientBrokerError.
    """
    try:
        error: _KiteError | None = _KiteError.model_validate(body)
    except ValidationError:
        error = None
    error_type = error.error_type if error and error.error_type else "no Kite error body"
    message = _redact(error.message, secrets)[:200] if error else ""
    what = f"{CODE}: HTTP {status} {error_type}" + (f": {message}" if message else "")
    # 403 is documented as "session expired or invalidated, must relogin". 401 is not in the docs;
    # Zerodha's own Go client treats it as a TokenException too, and retrying cannot cure it.
    if status in (401, 403) or error_type == "TokenException":
        return AuthRejected(f"{what} (log in to Kite again for a new access token)")
    if error_type in _TRANSIENT_ERROR_TYPES:
        return TransientBrokerError(what)
    return InvalidResponse(what)


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = exc.error_count() - 1
    return f"{where}: {first['msg']}" + (f" (and {more} more)" if more else "")


def _normalise(entries: Sequence[_KiteHolding]) -> list[Holding]:
    holdings = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        key = (entry.tradingsymbol, entry.exchange)
        if key in seen:
            # The ledger keys positions by (symbol, exchange): two rows would silently overwrite.
            raise InvalidResponse(f"{CODE}: {entry.tradingsymbol} on {entry.exchange} is listed twice")
        seen.add(key)
        holding = _holding(entry)
        if holding is not None:
            holdings.append(holding)
    return holdings


def _holding(entry: _KiteHolding) -> Holding | None:
    """One Holding for a Kite entry: delivery (settled + T+1) and MTF shares together.

    Quantity: `quantity + t1_quantity`. The field table describes `quantity` as "Net quantity
    (T+1 + realised)", but Zerodha's sample data contradicts that: RELIANCE has quantity 0,
    t1_quantity 2, and pnl 15 = 2 x (2214 - 2206.5); SBIN has quantity 11, t1_quantity 7, and pnl
    -37.8 = 18 x (426.9 - 429). So `quantity` excludes the shares bought but not yet delivered,
    which the account owns all the same (they are sellable and settle into DEMAT on their own).

    MTF: the current portfolio sample puts an `mtf` object inside a holding (AARON: quantity 1,
    average_price 161, pnl 191.95 = 1 x (352.95 - 161), and mtf quantity 1000 at 100, value 100000),
    so the top-level figures cover the delivery shares only and the MTF shares come on top. They
    are the account's shares too (bought with the broker's funding), so they are added here, and the
    average price is the quantity-weighted average of both parts, rounded to 8 places.

    `used_quantity` (sold from the holding today) is not subtracted: the docs do not say whether
    `quantity` already reflects today's sales, and the sale shows in positions until it settles.
    An entry whose total is zero is left out: the account no longer holds that instrument.
    """
    currency = _CURRENCY_BY_EXCHANGE.get(entry.exchange)
    if currency is None:
        raise InvalidResponse(
            f"{CODE}: {entry.tradingsymbol} is on exchange {entry.exchange!r}, not NSE or BSE as documented"
        )
    delivery = entry.quantity + entry.t1_quantity
    mtf = entry.mtf.quantity if entry.mtf is not None else 0
    quantity = delivery + mtf
    if quantity == 0:
        return None
    average = entry.average_price
    if entry.mtf is not None and mtf != 0:
        average = (delivery * entry.average_price + mtf * entry.mtf.average_price) / quantity
    try:
        return Holding(
            symbol=entry.tradingsymbol,
            exchange=entry.exchange,
            isin=entry.isin or None,
            currency=currency,
            asset_type=_asset_type(entry.isin),
            quantity=Decimal(quantity),
            average_price=_to_price_places(average),
            last_price=_to_price_places(entry.last_price),
        )
    except (ValidationError, InvalidOperation) as exc:
        problem = _first_problem(exc) if isinstance(exc, ValidationError) else "number out of range"
        raise InvalidResponse(f"{CODE}: {entry.tradingsymbol} cannot be a holding: {problem}") from None


def _to_price_places(value: Decimal) -> Decimal:
    """At most 8 decimal places. Kite's prices are floats on its side, and its docs show float noise
    (pnl 3.5999999999999943); anything finer than 8 places is that noise, not a price."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < _PRICE_EXPONENT:
        return value.quantize(_PRICE_QUANTUM)
    return value


def _asset_type(isin: str) -> AssetType:
    """The payload has no instrument type; the Indian ISIN prefix says it: INF is a mutual fund
    scheme's units (on an exchange, an ETF such as GOLDBEES in the sample), IN followed by a digit
    is a government security (G-Sec, SDL, SGB), the rest (INE...) is a company's security."""
    if isin.startswith("INF"):
        return AssetType.ETF
    if len(isin) > 2 and isin.startswith("IN") and isin[2].isdigit():
        return AssetType.BOND
    return AssetType.EQUITY


# Limits from https://kite.trade/docs/connect/v3/exceptions/#api-rate-limit: "all other endpoints"
# (holdings among them) 10 requests per second, per API key. The docs give no burst allowance, so
# requests are spaced evenly (burst 1). They are silent on concurrency: one request per account
# here, so the rate governs; 10 accounts in flight at once matches it.
@register_broker(ZERODHA)
def create(context: AdapterContext) -> ZerodhaKite:
    return ZerodhaKite(base_url=context.base_url, limiter=context.limiter)
