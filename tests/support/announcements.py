"""Reading what the ledger announced on `holdings.changes`, for tests that count it."""

from __future__ import annotations

from shared import topics
from shared.bus.port import MessageBus
from shared.events import HoldingsChanged, decode_event
from tests.support.waiting import eventually


async def announced_changes(bus: MessageBus, *, group: str, snapshots: int) -> list[HoldingsChanged]:
    """Every HoldingsChanged on the topic, read until `snapshots` distinct snapshots are announced,
    and then a second more, so that a repeat right behind them is counted too."""
    changes = await bus.subscribe([topics.HOLDINGS_CHANGES], group=group)
    announced: list[HoldingsChanged] = []

    async def all_announced() -> bool:
        records = await changes.fetch(max_records=1000, timeout_s=0.5)
        announced.extend(decode_event(HoldingsChanged, r.value) for r in records)
        return len({a.snapshot_id for a in announced}) >= snapshots

    try:
        await eventually(all_announced, timeout_s=120, what="a HoldingsChanged for every snapshot")
        records = await changes.fetch(max_records=1000, timeout_s=1)
        announced.extend(decode_event(HoldingsChanged, r.value) for r in records)
    finally:
        await changes.close()
    return announced
