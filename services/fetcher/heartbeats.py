"""The fetcher's announcements on `fetchers.heartbeats`: one every FETCHER_HEARTBEAT_SECONDS while
it runs, a tombstone when it stops cleanly (see shared/fetcher_heartbeats.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared.bus.port import BusUnavailable, MessageBus
from shared.events import utc_now
from shared.fetcher_heartbeats import FetcherHeartbeat, farewell

log = logging.getLogger(__name__)


@dataclass
class Heartbeats:
    bus: MessageBus
    fetcher_id: str
    broker: str
    interval_s: float
    in_flight: Callable[[], int]
    handled: Callable[[], int]
    started_at: datetime = field(default_factory=utc_now)

    def beat(self) -> FetcherHeartbeat:
        return FetcherHeartbeat(
            fetcher_id=self.fetcher_id,
            broker=self.broker,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self.started_at,
            sent_at=utc_now(),
            in_flight=self.in_flight(),
            handled=self.handled(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop` is set, then say goodbye. A beat the bus refuses is skipped: the next
        one may pass, and readers tolerate a few missing."""
        while not stop.is_set():
            try:
                await self.bus.publish([self.beat().message()])
            except BusUnavailable as exc:
                log.warning("heartbeat not published", extra={"broker": self.broker, "error": str(exc)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        try:
            await self.bus.publish([farewell(self.fetcher_id)])
        except BusUnavailable as exc:
            log.warning("farewell not published", extra={"broker": self.broker, "error": str(exc)})
