"""A fake DhanHQ API v2: `GET /v2/holdings` with Dhan's documented headers, bodies and error body.

Sources and the choices made where the docs are silent: tests/fakes/data/dhan/README.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.fetcher.testing import Scenario
from tests.fakes.rate_windows import FixedWindowLimit

DATA = Path(__file__).parent / "data" / "dhan"
# https://dhanhq.co/docs/v2/ "Rate Limit": Non Trading APIs 20 per second; DH-904 past it, "from
# single user" (annexure): counted per user, i.e. per access token here.
RATE_LIMIT_PER_S = 20
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.fake-dhan-session.c2lnbmF0dXJl"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


class DhanFake:
    """Answers as Dhan does; `scenario` picks the answer, the attributes below refine it for a test."""

    def __init__(self, *, access_token: str = ACCESS_TOKEN, holdings: str = "holdings.json") -> None:
        self.scenario = Scenario.HOLDINGS
        self.requests_seen = 0
        self.access_token = access_token  # the one token this fake accepts
        self.holdings = sample(holdings)
        self.answer: tuple[int, bytes] | None = None  # replaces the holdings answer (status, body)
        self.retry_after: str | None = None  # a Retry-After for the rate-limit answer (none documented)
        # The body of the SERVER_ERROR answer: DH-908 as documented, or a code outside the annexure.
        self.server_error_body = sample("error_internal_server.json")
        self.server_error_status = 500
        self.seen: list[Request] = []
        self.rate_limit = FixedWindowLimit(RATE_LIMIT_PER_S)  # per user (token); `rejected` counts 429s
        self._app = Starlette(routes=[Route("/v2/holdings", self._holdings, methods=["GET"])])

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:  # ASGI
        if scope["type"] == "http":
            self.requests_seen += 1
        await self._app(scope, receive, send)

    async def _holdings(self, request: Request) -> Response:
        self.seen.append(request)
        if not self.rate_limit.admit(request.headers.get("access-token", "")):
            return _json(429, sample("error_rate_limit.json"))  # DH-904
        # "User has to input an access token in the header for every request" (docs/v2); a missing,
        # wrong or expired token is DH-901. Its HTTP status is not documented: 401, as clients see it.
        if (
            self.scenario is Scenario.AUTH_REJECTED
            or request.headers.get("access-token") != self.access_token
        ):
            return _json(401, sample("error_invalid_authentication.json"))
        if self.scenario is Scenario.RATE_LIMITED:
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return _json(429, sample("error_rate_limit.json"), headers)  # DH-904; status undocumented
        if self.scenario is Scenario.SERVER_ERROR:
            return _json(self.server_error_status, self.server_error_body)  # DH-908 unless told otherwise
        if self.scenario is Scenario.MALFORMED:
            return _json(200, sample("holdings_malformed.json"))
        if self.answer is not None:
            return _json(*self.answer)
        return _json(200, self.holdings)


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)
