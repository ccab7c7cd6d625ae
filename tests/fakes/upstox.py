"""A fake Upstox API v2: the long-term holdings endpoint with its documented headers and answers.

Documentation reproduced (payloads and their sources are listed in data/upstox/README.md):
- https://upstox.com/developer/api-documentation/get-holdings: `GET /v2/portfolio/long-term-holdings`,
  required headers `Authorization: Bearer {access_token}` and `Accept: application/json`, the 200 sample;
  not paginated.
- https://upstox.com/developer/api-documentation/error-codes: 401 / UDAPI100050 for a bad token, 406 for
  a non-JSON Accept, 429 / UDAPI10005, 500 / UDAPI100500, UDAPI10000 for an unknown URL.
- https://upstox.com/developer/api-documentation/response-structure: the error envelope.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.fetcher.testing import Scenario
from tests.fakes.rate_windows import FixedWindowLimit

DATA = Path(__file__).parent / "data" / "upstox"
HOLDINGS_PATH = "/v2/portfolio/long-term-holdings"
# https://upstox.com/developer/api-documentation/rate-limiting: standard APIs 50 per second "per user,
# per API" (500/minute and 2000/30 minutes too; a test never sends that many for one user).
RATE_LIMIT_PER_S = 50


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _malformed_holdings() -> bytes:
    body: dict[str, Any] = json.loads(sample("holdings.json"))
    broken = copy.deepcopy(body)
    del broken["data"][0]["quantity"]
    return json.dumps(broken).encode()


class UpstoxFake:
    """Serves the documented answers; `holdings_body` can be swapped for a test's own 200 payload."""

    def __init__(self, *, access_token: str, holdings: str = "holdings.json") -> None:
        self.scenario = Scenario.HOLDINGS
        self.requests_seen = 0
        self.headers_seen: list[Headers] = []  # of every request received, in order
        self.holdings_body = sample(holdings)  # holdings_unsettled.json: bought, not yet settled (T1)
        self._access_token = access_token
        self.rate_limit = FixedWindowLimit(RATE_LIMIT_PER_S)  # per user (token); `rejected` counts 429s
        self._app = Starlette(
            routes=[Route(HOLDINGS_PATH, self._holdings, methods=["GET"])],
            exception_handlers={404: self._not_supported},
        )

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        # FakeBroker types the ASGI arguments as `object`; they are the ASGI scope and channels.
        await self._app(cast(Scope, scope), cast(Receive, receive), cast(Send, send))

    async def _holdings(self, request: Request) -> Response:
        self.requests_seen += 1
        self.headers_seen.append(request.headers)
        if not self.rate_limit.admit(request.headers.get("authorization", "")):
            return _json(sample("error_rate_limited.json"), 429)
        if self.scenario is Scenario.AUTH_REJECTED:
            return _json(sample("error_invalid_token.json"), 401)  # what an expired token gets
        if self.scenario is Scenario.RATE_LIMITED:
            return _json(sample("error_rate_limited.json"), 429)  # no Retry-After is documented
        if self.scenario is Scenario.SERVER_ERROR:
            return _json(sample("error_server.json"), 500)
        # The error-codes page: 401 "Your API key is wrong or missing"; the same code for both, as the
        # docs name no separate one for a missing header.
        if request.headers.get("authorization") != f"Bearer {self._access_token}":
            return _json(sample("error_invalid_token.json"), 401)
        if "application/json" not in request.headers.get("accept", ""):
            # 406 "You requested a format that isn't json": the status is documented, its body is not.
            return Response(status_code=406)
        if self.scenario is Scenario.MALFORMED:
            return _json(_malformed_holdings(), 200)
        return _json(self.holdings_body, 200)

    async def _not_supported(self, request: Request, exc: Exception) -> Response:
        self.requests_seen += 1
        self.headers_seen.append(request.headers)
        return _json(sample("error_not_supported.json"), 404)


def _json(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")
