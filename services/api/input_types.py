"""The two rules every value that comes into the API as text obeys, as annotated types.

`Timestamp`: ISO 8601 with a zone (never a Unix time), between 1900-01-01 and 9999-12-31 in UTC,
handed on in UTC. `Text` (NO_CONTROL_CHARACTERS): no control characters (C0, DEL, C1) and no lone
surrogates, which Postgres refuses (a 500) and SQLite stores: both modes answer the same 422.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

# A date, a T (or space), hours and minutes: what sets ISO 8601 apart from a number like "0.5".
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rule for clients, in the OpenAPI document (JSON Schema regexes cannot name surrogates).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


def _iso_8601_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("must be an ISO 8601 date-time with a zone, e.g. 2026-01-31T15:30:00Z")
    return value


def _in_supported_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(
            f"must be between {EARLIEST.isoformat()} and {LATEST.isoformat()} once converted to UTC"
        )
    return utc


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_8601_text), AfterValidator(_in_supported_range)]
"""A point in time as the API takes it: ISO 8601 with a zone, in the supported range, returned in UTC."""


def _printable(value: str) -> str:
    found = _FORBIDDEN_CHARS.search(value)
    if found is not None:
        code = f"U+{ord(found.group()):04X}"
        raise ValueError(
            f"must not contain control characters or lone surrogates ({code} at {found.start()})"
        )
    return value


class _NoControlCharacters:
    """The rule as Annotated metadata: put it after any StringConstraints, so it sees the stripped
    text. Also writes TEXT_PATTERN into the JSON Schema, so generated clients know the rule."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_printable, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("pattern", TEXT_PATTERN)
        return json_schema


NO_CONTROL_CHARACTERS = _NoControlCharacters()

Text = Annotated[str, NO_CONTROL_CHARACTERS]
"""Text from a client. Bounded: `Annotated[str, StringConstraints(...), NO_CONTROL_CHARACTERS]`."""
