"""The one consume loop every service runs: fetch, decode, handle, then commit.

Offsets are committed only after the handler returned, so an effect is durable before its input is
marked done. A record that does not decode, or that a handler rejects on its own, goes to the
topic's dead-letter topic with the reason; the loop carries on. An infrastructure error (database or
bus down) is retried with backoff and never dead-lettered: waiting loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shared.bus.dead_letters import dead_letter_for
from shared.bus.port import MessageBus, Record
from shared.events import Event, EventDecodeError, decode_event

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[Event]], Awaitable[None]]


@dataclass
class EventConsumer:
    bus: MessageBus
    group: str
    event_types: Mapping[str, type[Event]]
    handler: BatchHandler
    transient_errors: tuple[type[BaseException], ...] = (OSError, TimeoutError)
    max_records: int = 500
    poll_timeout_s: float = 0.5
    max_backoff_s: float = 30.0
    handled: int = field(default=0, init=False)

    async def run(self, stop: asyncio.Event) -> None:
        subscription = await self.bus.subscribe(list(self.event_types), group=self.group)
        log.info("consuming", extra={"group": self.group, "topics": list(self.event_types)})
        try:
            while not stop.is_set():
                records = await subscription.fetch(
                    max_records=self.max_records, timeout_s=self.poll_timeout_s
                )
                if not records:
                    continue
                if await self._process(records, stop):
                    await subscription.commit()
                    self.handled += len(records)
        finally:
            await subscription.close()

    async def _process(self, records: list[Record], stop: asyncio.Event) -> bool:
        """Handle a batch; False when stopped before its effect was durable (so: do not commit)."""
        decoded: list[tuple[Record, Event]] = []
        for record in records:
            try:
                decoded.append((record, decode_event(self.event_types[record.topic], record.value)))
            except EventDecodeError as exc:
                await self._dead_letter(record, str(exc))
        return await self._handle(decoded, stop)

    async def _handle(self, batch: list[tuple[Record, Event]], stop: asyncio.Event) -> bool:
        backoff = 0.2
        while batch:
            try:
                await self.handler([event for _, event in batch])
                return True
            except self.transient_errors as exc:
                log.warning(
                    "handler hit a transient error; retrying the batch",
                    extra={"group": self.group, "error": repr(exc), "retry_in_s": backoff},
                )
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                    return False
                except TimeoutError:
                    backoff = min(backoff * 2, self.max_backoff_s)
            except Exception as exc:
                if len(batch) == 1:
                    log.exception("handler rejected a record", extra={"group": self.group})
                    await self._dead_letter(batch[0][0], f"handler failed: {exc!r}")
                    return True
                # Retry one by one so that only the record at fault is dead-lettered.
                for one in batch:
                    if not await self._handle([one], stop):
                        return False
                return True
        return True

    async def _dead_letter(self, record: Record, reason: str) -> None:
        log.warning(
            "dead-lettering record",
            extra={
                "group": self.group,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
        )
        await self.bus.publish([dead_letter_for(record, reason, group=self.group)])
