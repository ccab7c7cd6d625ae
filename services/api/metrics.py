"""The API's Prometheus metrics: each request's duration by route template and status class.

A pure ASGI middleware: the route FastAPI matched leaves itself in the scope (`scope["route"]`), and
the label is its full path template (`/v1/accounts/{account_id}`, prefixes of included routers too,
from the app's route contexts), never the raw path, which would give a series per account. Requests
no route matched are `unmatched`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.metrics import status_class

REQUEST_DURATION = Histogram(
    "portfolio_sync_api_request_duration_seconds",
    "Time the API took to answer a request, by method, route template and status class.",
    ["method", "route", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, routes: Callable[[], Iterable[tuple[object, str]]]) -> None:
        self.app = app
        self._routes = routes
        self._templates: dict[int, str] | None = None  # id(route) -> its full path template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless the app starts a response: an exception, or a dropped connection

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            REQUEST_DURATION.labels(
                method=scope["method"] if scope["method"] in _METHODS else "other",
                route=self._template(scope),
                status_class=status_class(status),
            ).observe(time.perf_counter() - started)

    def _template(self, scope: Scope) -> str:
        route: Any = scope.get("route")
        if route is None:
            return UNMATCHED
        if self._templates is None:  # at the first request: every route is included by then
            self._templates = {id(r): template for r, template in self._routes()}
        path = self._templates.get(id(route), getattr(route, "path", None))
        return path if isinstance(path, str) else UNMATCHED
