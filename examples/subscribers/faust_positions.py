"""A faust-streaming app keeping each account's positions in a table, from `holdings.current` and
`holdings.changes`, and serving them: `GET /accounts/{account_id}/positions`.

    KAFKA_BOOTSTRAP_SERVERS=localhost:9092 python -m examples.subscribers.faust_positions worker

Both topics are read at once from the start (a new group reads from the earliest offsets): the rules
of `examples.subscribers.positions` make the order between them not matter. The table lives in
memory and is rebuilt from its changelog topic on a restart. Set KAFKA_NAMESPACE as the services
have it; POSITIONS_PARTITIONS to the topics' partition count (faust keeps the table co-partitioned
with the topics it reads: one account, one partition, one worker); POSITIONS_WEB_PORT for the view.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.web import Request, Response, View

from examples.subscribers.positions import on_change, on_current

NAMESPACE = os.environ.get("KAFKA_NAMESPACE", "")
PARTITIONS = int(os.environ.get("POSITIONS_PARTITIONS", "4"))

app = faust.App(
    f"{NAMESPACE}positions-example",
    broker=[f"kafka://{s}" for s in os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092").split(",")],
    store="memory://",
    topic_partitions=PARTITIONS,
    web_port=int(os.environ.get("POSITIONS_WEB_PORT", "6066")),
    web_host="127.0.0.1",
)

# Raw bytes in: the events are JSON, and a tombstone is no value at all.
current = app.topic(f"{NAMESPACE}holdings.current", key_serializer="raw", value_serializer="raw")
changes = app.topic(f"{NAMESPACE}holdings.changes", key_serializer="raw", value_serializer="raw")
positions = app.Table("positions", partitions=PARTITIONS)


def _keep(account: str, state: dict[str, Any] | None) -> None:
    if state is None:
        positions.pop(account, None)
    else:
        positions[account] = state


@app.agent(current)
async def follow_current(stream: AsyncIterator[tuple[bytes, bytes | None]]) -> None:
    async for key, value in stream.items():  # type: ignore[attr-defined]
        account = key.decode()
        _keep(account, on_current(positions.get(account), value))


@app.agent(changes)
async def follow_changes(stream: AsyncIterator[tuple[bytes, bytes]]) -> None:
    async for key, value in stream.items():  # type: ignore[attr-defined]
        account = key.decode()
        _keep(account, on_change(positions.get(account), value))


@app.page("/accounts/{account_id}/positions")
class AccountPositions(View):
    async def get(self, request: Request, account_id: str) -> Response:
        state = positions.get(account_id)
        if state is None:
            return self.json({"detail": f"no positions for account {account_id}"}, status=404)
        return self.json(state)


if __name__ == "__main__":
    app.main()
