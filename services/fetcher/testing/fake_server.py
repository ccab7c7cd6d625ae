"""Serve a fake broker API on a loopback port, over real HTTP, inside the test's event loop."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send


class Scenario(enum.Enum):
    """What the fake broker answers next; every fake must support all of these."""

    HOLDINGS = "holdings"  # the documented sample response
    AUTH_REJECTED = "auth_rejected"  # the broker's documented answer to a bad or expired token
    RATE_LIMITED = "rate_limited"  # the broker's documented rate-limit answer (429, Retry-After if sent)
    SERVER_ERROR = "server_error"  # a 5xx as the broker documents it
    MALFORMED = "malformed"  # 200 with a body that does not fit the documented schema


class FakeBroker(Protocol):
    """An ASGI app reproducing one broker's published API, switchable between scenarios."""

    scenario: Scenario
    requests_seen: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class _QuietServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test runner owns signals
        return None


@asynccontextmanager
async def serve_fake(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 at a free port; yield its base URL; stop it on exit."""
    server = _QuietServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not server.started:
        if task.done() or loop.time() > deadline:
            raise RuntimeError("the fake broker server did not start")
        await asyncio.sleep(0.01)  # uvicorn has no started-event to await
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
