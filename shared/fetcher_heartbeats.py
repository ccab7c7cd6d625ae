"""What a fetcher process says of itself every few seconds on `fetchers.heartbeats`.

The topic is compacted and keyed by fetcher id, so it holds each fetcher's newest heartbeat; a
fetcher that stops cleanly leaves a tombstone (an empty value) and disappears. One killed leaves its
last heartbeat, which readers show as gone once it is older than FETCHER_GONE_AFTER_SECONDS.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from shared import topics
from shared.bus.port import OutgoingMessage, Record


class FetcherHeartbeat(BaseModel):
    model_config = ConfigDict(frozen=True)

    fetcher_id: str = Field(description="Unique per process: host, pid and a random part.")
    broker: str
    host: str
    pid: int
    started_at: AwareDatetime
    sent_at: AwareDatetime = Field(description="When the fetcher last said it was alive.")
    in_flight: int = Field(description="Accounts being fetched right now.")
    handled: int = Field(description="Requests handled (outcome published, offset committed) since start.")

    def message(self) -> OutgoingMessage:
        return OutgoingMessage(topics.FETCHER_HEARTBEATS, self.fetcher_id, self.model_dump_json().encode())


def farewell(fetcher_id: str) -> OutgoingMessage:
    """The tombstone a fetcher leaves when it stops cleanly."""
    return OutgoingMessage(topics.FETCHER_HEARTBEATS, fetcher_id, b"")


def latest_heartbeats(records: Iterable[Record]) -> list[FetcherHeartbeat]:
    """Each fetcher's newest heartbeat, from records in log order; a tombstone removes its fetcher.
    A value that is not a heartbeat is skipped (anyone may write to a topic)."""
    latest: dict[str, FetcherHeartbeat] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key is None:
            continue
        if not record.value:
            latest.pop(record.key, None)
            continue
        try:
            latest[record.key] = FetcherHeartbeat.model_validate_json(record.value)
        except ValidationError:
            continue
    return sorted(latest.values(), key=lambda h: (h.broker, h.started_at, h.fetcher_id))
