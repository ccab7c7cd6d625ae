"""A fake Kite Connect v3 API: `GET /portfolio/holdings` with Kite's headers, bodies and errors.

Sources of every body are in `data/zerodha/README.md`. Numbers are kept as the exact text of the
sample (Decimal, written back verbatim), so a test can tell an adapter that parses through float.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.fetcher.testing import Scenario
from tests.fakes.rate_windows import FixedWindowLimit

DATA = Path(__file__).parent / "data" / "zerodha"
HOLDINGS_PATH = "/portfolio/holdings"
API_KEY = "kite_api_key_7f3a"
# https://kite.trade/docs/connect/v3/exceptions/#api-rate-limit: "all other endpoints" 10 requests per
# second, counted per API key over all its users (Zerodha staff: kite.trade/forum/discussion/comment/51559).
RATE_LIMIT_PER_S = 10
ACCESS_TOKEN = "kite_access_token_9c2e51"


def load_sample(name: str) -> Any:
    """A sample body with every fraction as the Decimal of its exact text."""
    return json.loads((DATA / name).read_text(), parse_float=Decimal)


def exact_json(value: Any) -> bytes:
    """JSON text in which a Decimal is written exactly as it is (json.dumps would need a float)."""
    return _exact(value).encode()


def _exact(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)}: {_exact(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_exact(item) for item in value) + "]"
    return json.dumps(value)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names, as Starlette gives them


def _kite_json(status: int, body: Any) -> Response:
    return Response(exact_json(body), status_code=status, media_type="application/json")


class ZerodhaFake:
    """Kite's holdings endpoint for one account whose session is (`api_key`, `access_token`)."""

    def __init__(
        self, *, api_key: str = API_KEY, access_token: str = ACCESS_TOKEN, sample: str = "holdings.json"
    ) -> None:
        self.scenario = Scenario.HOLDINGS
        self.requests_seen = 0
        self.seen: list[SeenRequest] = []
        self.api_key = api_key
        self.access_token = access_token
        self.holdings_body: Any = load_sample(sample)  # tests may edit it: it is served as it is
        self.token_error_body: Any = load_sample("token_exception.json")
        self.rate_limit = FixedWindowLimit(RATE_LIMIT_PER_S)  # per API key; `rejected` counts the 429s
        self._app = Starlette(
            routes=[Route(HOLDINGS_PATH, self._holdings, methods=["GET"])],
            exception_handlers={HTTPException: self._http_error},
        )

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        asgi_scope = cast(Scope, scope)
        if asgi_scope["type"] == "http":
            self.requests_seen += 1
        await self._app(asgi_scope, cast(Receive, receive), cast(Send, send))

    async def _holdings(self, request: Request) -> Response:
        self.seen.append(
            SeenRequest(request.method, request.url.path, request.url.query, dict(request.headers))
        )
        if request.headers.get("x-kite-version") != "3":
            # The changelog only says v3 needs this header; what the API answers without it is not
            # documented (the old v2 backend). Refusing makes a missing header visible in tests.
            return _kite_json(400, _error("X-Kite-Version: 3 is required", "InputException"))
        authorization = request.headers.get("authorization", "")
        if not self.rate_limit.admit(authorization.removeprefix("token ").split(":")[0]):
            return _kite_json(429, load_sample("too_many_requests.json"))
        expected = f"token {self.api_key}:{self.access_token}"
        if request.headers.get("authorization") != expected or self.scenario is Scenario.AUTH_REJECTED:
            return _kite_json(403, self.token_error_body)
        if self.scenario is Scenario.RATE_LIMITED:
            return _kite_json(429, load_sample("too_many_requests.json"))
        if self.scenario is Scenario.SERVER_ERROR:
            return _kite_json(503, load_sample("network_exception.json"))
        if self.scenario is Scenario.MALFORMED:
            body = copy.deepcopy(self.holdings_body)
            body["data"][0]["quantity"] = str(body["data"][0]["quantity"])  # a string where a number belongs
            return _kite_json(200, body)
        return _kite_json(200, self.holdings_body)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        # Unknown routes and methods (404, 405): the exceptions page's error shape; it names no
        # exception for these codes, so GeneralException ("an unclassified error").
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return _kite_json(
            status, _error(f"{request.method} {request.url.path}: HTTP {status}", "GeneralException")
        )


def _error(message: str, error_type: str) -> dict[str, str]:
    return {"status": "error", "message": message, "error_type": error_type}
