"""The whole embedded system (services/demo.py: API with the dashboard, scheduler, simulated-broker
fetchers, ledger; in-memory bus, SQLite) served on a free port from a background thread, for tests
that come in through a real socket, such as a browser's."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx

from services.demo import EmbeddedSystem, embedded_settings, embedded_system
from services.user_admin import create_user
from shared.settings import Settings
from tests.support.processes import free_port
from tests.support.waiting import eventually

T = TypeVar("T")
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0


class LiveSystem:
    """Started by `start`, ended by `stop`; `run` executes a coroutine on the system's own loop."""

    def __init__(self, database: Path) -> None:
        self.settings = embedded_settings(Settings(), database)
        self.port = free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._started: Future[EmbeddedSystem] = Future()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._serve, name="live-system", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.result(timeout=START_TIMEOUT_S)  # raises what the thread raised while starting
        asyncio.run(eventually(self._ready, timeout_s=START_TIMEOUT_S, what=f"{self.base_url}/readyz"))

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=START_TIMEOUT_S)
        if self._thread.is_alive():
            raise AssertionError("the live system did not stop")

    @property
    def system(self) -> EmbeddedSystem:
        return self._started.result(timeout=0)

    def run(self, work: Coroutine[Any, Any, T], *, timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=timeout_s)

    def sign_up(self, email: str) -> str:
        """A new user through the API, as the dashboard's sign-up does; returns their API token."""
        response = httpx.post(f"{self.base_url}/v1/users", json={"email": email}, timeout=10)
        response.raise_for_status()
        return str(response.json()["api_token"])

    def operator(self, email: str) -> str:
        """A new operator, made the way the first one is (`portfolio-sync users create --operator`)."""
        return self.run(create_user(self.settings, email, operator=True))

    async def _ready(self) -> bool:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2) as client:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            if not self._started.done():
                self._started.set_exception(exc)
            raise
        finally:
            self._loop.close()

    async def _main(self) -> None:
        async with embedded_system(self.settings) as system:
            self._started.set_result(system)
            await system.serve(HOST, self.port, self._stop)
