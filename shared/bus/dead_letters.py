"""The message a consumer parks on `<topic>.dlq` when it cannot process a record: original + reason."""

from __future__ import annotations

import base64

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.bus.port import OutgoingMessage, Record
from shared.events import utc_now
from shared.topics import dead_letters


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True)

    source_topic: str
    partition: int
    offset: int
    key: str | None
    error: str
    consumer_group: str
    value_base64: str = Field(description="The original message bytes, untouched.")
    failed_at: AwareDatetime = Field(default_factory=utc_now)

    def original_value(self) -> bytes:
        return base64.b64decode(self.value_base64)


def dead_letter_for(record: Record, error: str, *, group: str) -> OutgoingMessage:
    letter = DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        error=error,
        consumer_group=group,
        value_base64=base64.b64encode(record.value).decode(),
    )
    return OutgoingMessage(dead_letters(record.topic), record.key or "", letter.model_dump_json().encode())
