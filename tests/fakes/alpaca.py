"""A fake Alpaca Trading API v2 serving `GET /v2/positions`, its auth headers and its error answers.

Sample bodies come from Alpaca's docs; `data/alpaca/README.md` says where each one is from.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.fetcher.testing import Scenario
from tests.fakes.rate_windows import FixedWindowLimit

DATA = Path(__file__).parent / "data" / "alpaca"
# "200 requests per minute, per account" (https://alpaca.markets/support/usage-limit-api-calls/).
RATE_LIMIT = 200
RATE_WINDOW_S = 60


def sample(name: str) -> Any:
    return json.loads((DATA / name).read_text())


class AlpacaFake:
    """One Alpaca host (live or paper) that knows one key pair, like each real environment."""

    def __init__(
        self, *, key_id: str, secret_key: str, positions: list[dict[str, Any]] | None = None
    ) -> None:
        self.key_id = key_id
        self.secret_key = secret_key
        self.other_keys: dict[
            str, str
        ] = {}  # more accounts' key pairs (key id -> secret), if a test has many
        # Any: a test may serve a body that is not a list at all.
        self.positions: Any = sample("positions.json") if positions is None else positions
        self.scenario = Scenario.HOLDINGS
        self.requests_seen = 0
        self.last_headers: dict[str, str] = {}
        self.rate_limit_reset_at = 0
        # Per account (key id), in its own minute windows; `rejected` counts the 429s.
        self.rate_limit = FixedWindowLimit(RATE_LIMIT, window_s=RATE_WINDOW_S)
        self._app = Starlette(routes=[Route("/v2/positions", self._positions, methods=["GET"])])

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        asgi_scope = cast(Scope, scope)
        if asgi_scope["type"] == "http":
            self.requests_seen += 1
        await self._app(asgi_scope, cast(Receive, receive), cast(Send, send))

    async def _positions(self, request: Request) -> JSONResponse:
        self.last_headers = dict(request.headers)
        keys = {self.key_id: self.secret_key, **self.other_keys}
        given_id = request.headers.get("apca-api-key-id", "")
        authorised = given_id in keys and request.headers.get("apca-api-secret-key") == keys[given_id]
        if not self.rate_limit.admit(request.headers.get("apca-api-key-id", "")):
            return self._answer(sample("error_rate_limited.json"), 429, remaining=0)
        if not authorised or self.scenario is Scenario.AUTH_REJECTED:
            return self._answer(sample("error_unauthorized.json"), 401)
        if self.scenario is Scenario.RATE_LIMITED:
            return self._answer(sample("error_rate_limited.json"), 429, remaining=0)
        if self.scenario is Scenario.SERVER_ERROR:
            return self._answer(sample("error_internal.json"), 500)
        if self.scenario is Scenario.MALFORMED:
            return self._answer(sample("positions_malformed.json"), 200)
        return self._answer(self.positions, 200)

    def _answer(self, body: Any, status: int, *, remaining: int = RATE_LIMIT - 1) -> JSONResponse:
        # Every Trading API response carries these three (Alpaca staff on the forum; see the README).
        self.rate_limit_reset_at = int(time.time()) + RATE_WINDOW_S
        headers = {
            "X-Ratelimit-Limit": str(RATE_LIMIT),
            "X-Ratelimit-Remaining": str(remaining),
            "X-Ratelimit-Reset": str(self.rate_limit_reset_at),
        }
        return JSONResponse(body, status_code=status, headers=headers)
