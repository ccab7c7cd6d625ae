"""Steady "sync now" traffic over every account, while the fake broker's answers move on."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.chaos.stack import ChaosStack

MAX_IN_FLIGHT = 8


@dataclass
class SyncLoad:
    """POST /v1/accounts/{id}/sync at `rate_per_s`, accounts in turn; the broker's epoch advances
    every `epoch_s`. `accepted` holds every request id the API answered 202 with."""

    stack: ChaosStack
    rate_per_s: float = 20.0
    epoch_s: float = 1.0
    accepted: list[uuid.UUID] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # answers other than 202, by status
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        next_epoch = loop.time() + self.epoch_s
        async with self.stack.http() as http:
            for account_id in itertools.cycle(self.stack.accounts):
                if self._stop.is_set():
                    break
                if loop.time() >= next_epoch:
                    self.stack.broker.advance()
                    next_epoch += self.epoch_s
                await slots.acquire()
                task = asyncio.create_task(self._request(http, account_id, slots))
                pending.add(task)
                task.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1 / self.rate_per_s)  # the pace
            if pending:
                await asyncio.gather(*pending)

    async def _request(
        self, http: httpx.AsyncClient, account_id: uuid.UUID, slots: asyncio.Semaphore
    ) -> None:
        try:
            accepted = await sync_now(http, account_id)
            if isinstance(accepted, uuid.UUID):
                self.accepted.append(accepted)
            else:
                self.refused[accepted] += 1
        finally:
            slots.release()


async def sync_now(http: httpx.AsyncClient, account_id: uuid.UUID) -> uuid.UUID | str:
    """The request id of an accepted "sync now", or why it was not accepted (status or error)."""
    try:
        answer = await http.post(f"/v1/accounts/{account_id}/sync")
    except httpx.TransportError as exc:
        return type(exc).__name__
    if answer.status_code == 202:
        return uuid.UUID(answer.json()["request_id"])
    return str(answer.status_code)
