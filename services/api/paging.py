"""Keyset pages for every list of the API: `limit` + `cursor` in, `{items, next_cursor}` out.

A page ends at a position, the (time, id) of its last item; the next page starts just after it, in
the list's order. Pages stay stable while new items arrive, and no offset is scanned past.

The cursor is opaque to clients: base64url of a small JSON object naming the list it belongs to and
the position. It is decoded into a typed model as a whole, so a cursor that is empty, too long, not
base64, not JSON, of another list, with a field of the wrong type, or with a time that cannot be
expressed in UTC (year 1 with a positive offset, year 9999 with a negative one) is the same
documented 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

MAX_CURSOR_CHARS = 200
MAX_PAGE = 500

T = TypeVar("T")
R = TypeVar("R")
SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


class InvalidCursor(ValueError):
    """A `cursor` this API did not hand out for this list (or one altered on the way)."""


@dataclass(frozen=True)
class Position:
    """Where a page ended: the next page starts just after this (time, id) in the list's order."""

    at: datetime
    id: uuid.UUID


class _CursorBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    list: str = Field(alias="l")
    at: AwareDatetime = Field(alias="t")
    id: uuid.UUID = Field(alias="i")

    @field_validator("at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # A time valid with its offset may fall outside datetime's range once in UTC.
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("time out of range") from None


def encode_cursor(list_name: str, position: Position) -> str:
    body = _CursorBody(l=list_name, t=position.at.astimezone(UTC), i=position.id)
    raw = body.model_dump_json(by_alias=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(list_name: str, cursor: str) -> Position:
    """The position a cursor of list `list_name` names; InvalidCursor for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor("empty or too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = _CursorBody.model_validate_json(raw)
    except (binascii.Error, ValueError):  # ValidationError is a ValueError
        raise InvalidCursor("not a cursor") from None
    if body.list != list_name:
        raise InvalidCursor(f"a cursor of another list ({body.list[:20]!r})")
    return Position(at=body.at, id=body.id)


INVALID_CURSOR_DETAIL = (
    "invalid cursor: pass the `next_cursor` of the previous page of this list unchanged, "
    "or leave `cursor` out to start from the first page"
)


@dataclass(frozen=True)
class PageRequest:
    limit: int
    cursor: str | None

    def after(self, list_name: str) -> Position | None:
        """The decoded cursor, or None for the first page; a bad cursor is a 400."""
        if not self.cursor:  # `cursor=` (empty) is the first page, as if left out
            return None
        try:
            return decode_cursor(list_name, self.cursor)
        except InvalidCursor:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, INVALID_CURSOR_DETAIL) from None


def page_request(default_limit: int) -> Any:
    """The `limit` and `cursor` query parameters, as a dependency (one per default page size)."""

    async def dependency(
        limit: Annotated[
            int, Query(ge=1, le=MAX_PAGE, description=f"Most items on one page (at most {MAX_PAGE}).")
        ] = default_limit,
        cursor: Annotated[
            str | None,
            Query(
                description="The `next_cursor` of the previous page; leave out (or empty) for the first page."
            ),
        ] = None,
    ) -> PageRequest:
        return PageRequest(limit=limit, cursor=cursor)

    return Depends(dependency)


def keyset(
    query: SelectT,
    at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[uuid.UUID],
    *,
    after: Position | None,
    limit: int,
    newest_first: bool,
) -> SelectT:
    """`query` ordered by (at, id), from just after `after`, at most `limit` rows. Row values
    ((at, id) < (x, y)) are spelt out: they are not portable."""
    if newest_first:
        query = query.order_by(at.desc(), id_.desc())
        if after is not None:
            query = query.where(or_(at < after.at, and_(at == after.at, id_ < after.id)))
    else:
        query = query.order_by(at, id_)
        if after is not None:
            query = query.where(or_(at > after.at, and_(at == after.at, id_ > after.id)))
    return query.limit(limit)


def page_of(
    list_name: str,
    rows: Sequence[R],
    limit: int,
    *,
    position: Callable[[R], Position],
    item: Callable[[R], T],
) -> tuple[list[T], str | None]:
    """The page's items and next cursor from up to `limit + 1` rows (one more than asked: whether it
    came back says whether there is a next page)."""
    page = rows[:limit]
    next_cursor = encode_cursor(list_name, position(page[-1])) if len(rows) > limit else None
    return [item(row) for row in page], next_cursor


__all__ = [
    "INVALID_CURSOR_DETAIL",
    "InvalidCursor",
    "PageRequest",
    "Position",
    "decode_cursor",
    "encode_cursor",
    "keyset",
    "page_of",
    "page_request",
]
