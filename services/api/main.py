"""Entrypoint of the API service: `portfolio-sync api` calls `run`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from fastapi import FastAPI

from services.api.app import create_app, open_resources
from services.api.workers import serve_workers
from shared.metrics import metrics_served
from shared.runtime import run_until_signalled
from shared.settings import Settings


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the caller decides when to stop, and the process
    then exits 0 like every other service instead of re-raising SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_app(
    app: FastAPI,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    sockets: Sequence[socket.socket] | None = None,
) -> None:
    """Serve `app` until `stop` is set or the server ends by itself (a failed startup); on `sockets`
    already listening (a worker's, see workers.py) rather than binding host:port."""
    # lifespan "on": a failed startup (say, an out-of-date schema) stops the server, not just logs.
    # log_config None: keep the logging the CLI configured.
    server = _Server(uvicorn.Config(app, host=host, port=port, lifespan="on", log_config=None))
    serving = asyncio.create_task(server.serve(sockets=list(sockets) if sockets else None))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopping.cancel()
    await serving
    if not server.started:
        raise SystemExit(3)


async def serve(
    settings: Settings, stop: asyncio.Event, *, sockets: Sequence[socket.socket] | None = None
) -> None:
    """One API process: its clients, its metrics, and the app served until `stop` is set."""
    # Opened before the server starts, so a bad key or an unreachable database is one clear error.
    async with open_resources(settings) as resources:
        app = create_app(settings, resources=resources)
        with metrics_served(settings):  # on its own port: see docs/operations.md#metrics
            await serve_app(app, host=settings.api_host, port=settings.api_port, stop=stop, sockets=sockets)


def run(settings: Settings, *, workers: int = 1) -> int:
    """Serve on API_HOST:API_PORT until SIGINT/SIGTERM, in this process or in `workers` processes."""
    if workers > 1:
        return serve_workers(settings, workers)
    asyncio.run(run_until_signalled(lambda stop: serve(settings, stop)))
    return 0
