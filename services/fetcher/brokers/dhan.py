"""Dhan (DhanHQ API v2): an account's demat holdings, from `GET /holdings`.

Credentials (`account.credentials`):
    access_token   the user's DhanHQ access token (a JWT; Dhan issues it for at most 24 hours).
    No client id: the holdings request carries only the token (see below). Other keys are ignored.

Published documentation this adapter follows:
    https://dhanhq.co/docs/v2/
        base URL https://api.dhan.co/v2; "User has to input an access token in the header for every
        request" (`access-token: JWT`, with `Content-Type: application/json`); the error body
        `{"errorType": "", "errorCode": "", "errorMessage": ""}`; the rate-limit table
    https://dhanhq.co/docs/v2/portfolio/
        `GET /holdings`: "all holdings bought/sold in previous trading sessions. All T1 and delivered
        quantities"; no request body; the curl sample sends only `Content-Type` and `access-token`
    https://dhanhq.co/docs/v1/portfolio
        the same holdings sample and field table (exchange, tradingSymbol, securityId, isin, totalQty,
        dpQty, t1Qty, availableQty, collateralQty as int, avgCostPrice as float)
    https://dhanhq.co/docs/v2/annexure
        "Trading API Error": DH-901 ... DH-910 (the mapping table is at `_ERROR_KINDS` below)
    https://dhanhq.co/docs/v2/authentication
        access tokens are valid for 24 hours at most

What the documentation does not say, and what this adapter does about it:
- HTTP statuses: the docs give the error body and its codes, never the status they come with
  (clients report DH-901 under 401 and under 400, and "No holdings available" under 500). So the body
  decides, whatever the status: `send`'s inspect step reads Dhan's error body before it maps the status
  alone, which would otherwise turn an empty demat answered with a 5xx into a retried failure.
  Without a Dhan error body, 401/403 mean the token was refused, 429 and 5xx are left to `send`.
- An empty demat: not documented. Public Dhan clients report it answered with an error body,
  `{"errorType": "HOLDING_ERROR", "errorCode": "DH-1111", "errorMessage": "No holdings available"}`;
  that code alone is read as "no holdings" (an empty list). A plain `[]` is accepted too.
- `lastTradedPrice`: absent from the documented sample, but in the v2 payload (Dhan's own Python SDK
  models it on its Holding); read when present, else the last price is unknown (None).
- `exchange`: an enum the docs do not list. "ALL" means the demat holding is listed on both NSE and
  BSE; we report it as NSE, the primary market for Indian equities, so the instrument keeps one stable
  (symbol, exchange) key whichever way Dhan labels it. "NSE" and "BSE" are kept; anything else is
  refused, since the currency would be a guess.
- Currency: not in the payload; NSE and BSE quote in INR.
- Asset type: not in the payload. Derived from the ISIN's issuer code (NSDL numbering: INF.. mutual
  fund schemes, which in a demat traded on NSE/BSE are ETFs; IN0.. central government securities such
  as sovereign gold bonds); every other ISIN is reported as equity.
- Quantity: `totalQty` ("Total quantities"), taken as already counting `t1Qty` ("Quantities not
  delivered") and `collateralQty`; the sample (t1Qty 0) cannot confirm it, so T1 is never added on
  top. How MTF quantities (`mtf_qty`, seen in v2 payloads) relate to it is not documented either.
  A row with totalQty 0 is not a holding and is left out.
- Retry-After: not documented; used if Dhan ever sends it with DH-904.
- Pagination: none; one request returns every holding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, NoReturn

import httpx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from services.fetcher.adapter import (
    AccountContext,
    AuthRejected,
    BrokerAnswer,
    BrokerError,
    InvalidResponse,
    RateLimited,
    TransientBrokerError,
)
from services.fetcher.http import broker_client, decimal_json, retry_after_seconds, send
from services.fetcher.limits import BrokerLimiter
from services.fetcher.registry import AdapterContext, register_broker
from shared.brokers import DHAN
from shared.events import AssetType, Holding

CODE = DHAN.code
BASE_URL = DHAN.base_url
HOLDINGS_PATH = "/holdings"
[CREDENTIAL_KEY] = DHAN.credential_fields  # access_token

# https://dhanhq.co/docs/v2/ "Rate Limit": Order APIs 25/s, 250/min, 1000/h, 7000/day; Data APIs 5/s,
# 100000/day; Quote APIs 1/s; Non Trading APIs 20/s, unlimited per minute, hour and day. The page
# does not list which API falls in which column; a holdings read places no order and fetches no market
# data, so we take the Non Trading 20/s. Burst 1: requests go out at least 50 ms apart, so no second
# sees more than 20. The bucket is shared by every account this process syncs, though Dhan counts per
# user ("from single user"), so it is conservative. Concurrency is not a documented Dhan limit; ours.
LIMITS = DHAN.adapter_limits()

# https://dhanhq.co/docs/v2/annexure "Trading API Error", decided code by code for a holdings read.
# | Code   | Dhan's type: message (abridged)                                   | We raise
# | DH-901 | Invalid Authentication: client ID or access token invalid/expired | AuthRejected
# | DH-902 | Invalid Access: no Data API subscription or Trading API access    | AuthRejected (owner acts)
# | DH-903 | User Account: segments not activated, other requirements unmet    | AuthRejected (owner acts)
# | DH-904 | Rate Limit: too many requests from a single user                  | RateLimited
# | DH-905 | Input Exception: missing required fields, bad parameter values    | InvalidResponse
# | DH-906 | Order Error: incorrect request for order                          | InvalidResponse
# | DH-907 | Data Error: unable to fetch data (bad parameters or no data)      | TransientBrokerError
# | DH-908 | Internal Server Error: "This will only occur rarely"              | TransientBrokerError
# | DH-909 | Network Error: API unable to communicate with the backend system  | TransientBrokerError
# | DH-910 | Others: error originating from other reasons                      | TransientBrokerError
# DH-902/903: a retry cannot help, the owner must act on the account, as after a refused token.
# DH-905/906: our request has no parameters and places no order, so either means Dhan and this adapter
# disagree about the API, which no retry cures. DH-907 is not read as "empty": wrongly reporting an
# empty account would close every position, so it is retried (and fails finally after the attempts)
# instead. DH-910 gives no reason; retrying is the cautious choice. An undocumented code under a 5xx is
# Dhan's server failing in a way the annexure does not list (as DH-908 would): TransientBrokerError;
# under any other status it means Dhan and this adapter disagree about the API: InvalidResponse.
_ERROR_KINDS: Mapping[str, type[BrokerError]] = {
    "DH-901": AuthRejected,
    "DH-902": AuthRejected,
    "DH-903": AuthRejected,
    "DH-904": RateLimited,
    "DH-905": InvalidResponse,
    "DH-906": InvalidResponse,
    "DH-907": TransientBrokerError,
    "DH-908": TransientBrokerError,
    "DH-909": TransientBrokerError,
    "DH-910": TransientBrokerError,
}
_NO_HOLDINGS_CODE = "DH-1111"  # undocumented; observed for an empty demat (see the module docstring)

_EXCHANGES: Mapping[str, str] = {"ALL": "NSE", "NSE": "NSE", "BSE": "BSE"}
_CURRENCY = "INR"  # NSE and BSE quote in rupees
_MAX_BROKER_TEXT = 300


def _json_number(value: object) -> object:
    """A JSON integer becomes a Decimal; any other non-Decimal is left for strict validation to refuse."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


_Price = Annotated[Decimal, BeforeValidator(_json_number), Field(strict=True, ge=0)]
_Count = Annotated[StrictInt, Field(ge=0)]


class _DhanHolding(BaseModel):
    """One element of the `GET /holdings` array, as the field table documents it.

    Numbers must be JSON numbers (prices parsed to Decimal, never float; counts are ints) and text must
    be strings. The fields a Holding is built from are required; the other documented ones may be
    absent but, when present, must have their documented type. Unknown fields are ignored: Dhan adds
    fields (lastTradedPrice, mtf_qty) without notice.
    """

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore", frozen=True)

    exchange: Literal["ALL", "NSE", "BSE"]
    trading_symbol: StrictStr = Field(min_length=1)
    isin: StrictStr = Field(pattern=r"^[A-Z]{2}[A-Z0-9]{9}[0-9]$")
    total_qty: _Count
    avg_cost_price: _Price
    last_traded_price: _Price | None = None
    security_id: StrictStr | None = None
    dp_qty: _Count | None = None
    t1_qty: _Count | None = None
    available_qty: _Count | None = None
    collateral_qty: _Count | None = None


_HOLDINGS = TypeAdapter(list[_DhanHolding])


class _DhanError(BaseModel):
    """Dhan's documented error body; only `errorCode` is needed to recognise it."""

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore", frozen=True)

    error_code: StrictStr
    error_type: StrictStr | None = None
    error_message: StrictStr | None = None


class _DhanErrorAnswer(Exception):
    """Dhan answered with its error body; raised by the inspect step of `send`, turned into a BrokerError by
    the adapter, which knows the account's credentials to keep out of the message."""

    def __init__(self, error: _DhanError, status_code: int, retry_after_s: float | None, body: bytes) -> None:
        super().__init__(error.error_code)
        self.error = error
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.body = body


async def _raise_on_dhan_error_body(response: httpx.Response) -> None:
    """Runs before `send` looks at the status: Dhan's error body, not the undocumented status, decides."""
    if response.is_success:
        return
    await response.aread()
    try:
        error = _error_body(decimal_json(response.content))
    except ValueError:
        return  # not JSON: no Dhan error body, the status decides
    if error is not None:
        raise _DhanErrorAnswer(
            error, response.status_code, retry_after_seconds(response.headers), response.content
        )


class DhanBroker:
    """Fetches one Dhan account's holdings per call; one HTTP client for all accounts."""

    def __init__(self, *, base_url: str, limiter: BrokerLimiter) -> None:
        self._client = broker_client(base_url, limiter, headers={"Content-Type": "application/json"})

    async def fetch_answer(self, account: AccountContext) -> BrokerAnswer:
        token = account.credentials.get(CREDENTIAL_KEY)
        if not token:
            raise AuthRejected(f"{CODE}: the account's credentials have no {CREDENTIAL_KEY!r}")
        secrets = tuple(value for value in account.credentials.values() if value)
        request = self._client.build_request("GET", HOLDINGS_PATH, headers={"access-token": token})
        try:
            response = await send(self._client, request, broker=CODE, inspect=_raise_on_dhan_error_body)
        except _DhanErrorAnswer as answer:
            if answer.error.error_code == _NO_HOLDINGS_CODE:
                # An answer all the same, whatever its status: `parse_holdings` reads it as empty.
                return BrokerAnswer(status_code=answer.status_code, body=answer.body, secrets=secrets)
            _raise_for(answer, secrets)
        if response.status_code in (401, 403):
            raise AuthRejected(f"{CODE}: access token refused (HTTP {response.status_code}, no error body)")
        if response.status_code != 200:
            raise InvalidResponse(f"{CODE}: unexpected HTTP {response.status_code} to the holdings request")
        if response.content.lstrip().startswith(b"{"):  # not the holdings array: an error body under a 200?
            try:
                error = _error_body(decimal_json(response.content))
            except ValueError:
                error = None  # `parse_holdings` says what is wrong with it
            if error is not None and error.error_code != _NO_HOLDINGS_CODE:
                retry_after_s = retry_after_seconds(response.headers)
                _raise_for(_DhanErrorAnswer(error, 200, retry_after_s, response.content), secrets)
        return BrokerAnswer(status_code=200, body=response.content, secrets=secrets)

    def parse_holdings(self, answer: BrokerAnswer) -> Sequence[Holding]:
        try:
            body = decimal_json(answer.body)
        except ValueError:
            status = answer.status_code
            raise InvalidResponse(f"{CODE}: holdings response is not JSON (HTTP {status})") from None
        error = _error_body(body)
        if error is not None:  # an error body under a 200, or the empty demat's under any status
            if error.error_code == _NO_HOLDINGS_CODE:
                return []
            _raise_for(_DhanErrorAnswer(error, answer.status_code, None, answer.body), answer.secrets)
        try:
            rows = _HOLDINGS.validate_python(body)
        except ValidationError as exc:
            raise InvalidResponse(
                f"{CODE}: holdings response off the documented schema: {_problems(exc)}"
            ) from None
        return _holdings(rows)

    async def aclose(self) -> None:
        await self._client.aclose()


def _holdings(rows: Sequence[_DhanHolding]) -> list[Holding]:
    holdings: dict[tuple[str, str], Holding] = {}
    for index, row in enumerate(rows):
        if row.total_qty == 0:
            continue  # listed but no longer held (e.g. sold in full)
        holding = _holding(row, index)
        key = (holding.symbol, holding.exchange)
        if key in holdings:
            # Positions are keyed by (symbol, exchange): keeping one row would silently drop the other.
            raise InvalidResponse(f"{CODE}: holdings list {holding.symbol} on {holding.exchange} twice")
        holdings[key] = holding
    return list(holdings.values())


def _holding(row: _DhanHolding, index: int) -> Holding:
    try:
        return Holding(
            symbol=row.trading_symbol,
            exchange=_EXCHANGES[row.exchange],
            isin=row.isin,
            currency=_CURRENCY,
            asset_type=_asset_type(row.isin),
            quantity=Decimal(row.total_qty),
            average_price=row.avg_cost_price,
            last_price=row.last_traded_price,
        )
    except ValidationError as exc:
        raise InvalidResponse(
            f"{CODE}: holding [{index}] ({row.trading_symbol[:64]}) is not a valid holding: {_problems(exc)}"
        ) from None


def _asset_type(isin: str) -> AssetType:
    if isin.startswith("INF"):
        return AssetType.ETF
    if isin.startswith("IN0"):
        return AssetType.BOND
    return AssetType.EQUITY


def _raise_for(answer: _DhanErrorAnswer, secrets: Iterable[str]) -> NoReturn:
    error = answer.error
    said = f"{error.error_type or ''} (HTTP {answer.status_code}): {error.error_message or ''}"
    detail = _redact(f"{error.error_code} {said}", secrets)
    kind = _ERROR_KINDS.get(error.error_code)
    if kind is None:
        if 500 <= answer.status_code < 600:
            raise TransientBrokerError(f"{CODE}: server error with an undocumented code {detail}")
        raise InvalidResponse(f"{CODE}: undocumented error code {detail}")
    if kind is RateLimited:
        raise RateLimited(f"{CODE}: rate limited {detail}", retry_after_s=answer.retry_after_s)
    raise kind(f"{CODE}: {detail}")


def _error_body(body: Any) -> _DhanError | None:
    if not isinstance(body, dict) or "errorCode" not in body:
        return None
    try:
        return _DhanError.model_validate(body)
    except ValidationError:
        return None


def _redact(text: str, secrets: Iterable[str]) -> str:
    """Broker text, shortened, with any credential value it echoes blanked out."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text[:_MAX_BROKER_TEXT]


def _problems(exc: ValidationError) -> str:
    # Locations and messages only: input values could be large or echo a secret.
    return "; ".join(f"{_location(error['loc'])}: {error['msg']}" for error in exc.errors()[:5])


def _location(loc: tuple[int | str, ...]) -> str:
    """[0].totalQty for the first row's totalQty."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc) or "<root>"


@register_broker(DHAN)
def create(context: AdapterContext) -> DhanBroker:
    return DhanBroker(base_url=context.base_url, limiter=context.limiter)


__all__ = ["BASE_URL", "CODE", "LIMITS", "DhanBroker", "create"]
