"""Entrypoint of the API service: `portfolio-sync api` calls `run`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from services.api.app import create_app, open_resources
from shared.metrics import metrics_served
from shared.runtime import run_until_signalled
from shared.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides when to stop, and the process
    then exits 0 like every other service instead of re-raising SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_app(app: FastAPI, *, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` until `stop` is set or the server ends by itself (a failed startup)."""
    # lifespan "on": a failed startup (say, an out-of-date schema) stops the server, not just logs.
    # log_config None: keep the logging the CLI configured.
    server = _Server(uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None))
    serving = asyncio.create_task(server.serve())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
    if not server.started:
        raise SystemExit(3)


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    # Opened before the server starts, so a bad key or an unreachable database is one clear error.
    async with open_resources(settings) as resources:
        app = create_app(settings, resources=resources)
        with metrics_served(settings):  # on its own port: see docs/operations.md#metrics
            await serve_app(app, host=settings.api_host, port=settings.api_port, stop=stop)


def run(settings: Settings) -> None:
    """Serve on API_HOST:API_PORT until SIGINT/SIGTERM."""
    asyncio.run(run_until_signalled(lambda stop: _serve(settings, stop)))
