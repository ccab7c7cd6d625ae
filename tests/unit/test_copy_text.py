"""COPY text: what Postgres reads back must be exactly the values (the round trip through a real
Postgres is `test_text_that_needs_escaping_is_stored_exactly` in test_ledger, run on both databases)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from shared.db.copy_text import DatetimeTexts, copy_text


def _rows(*rows: tuple[object, ...]) -> list[tuple[object, ...]]:
    """The rows as the columns `copy_text` takes."""
    return list(zip(*rows, strict=True))


def test_plain_rows_are_tab_separated_lines_with_nulls_marked() -> None:
    row_id = uuid.UUID(int=1)
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    text = copy_text(_rows((row_id, "TCS", None, Decimal("1.50"), at, 3), (row_id, "", "NSE", None, at, 0)))
    assert text.decode().splitlines() == [
        f"{row_id.hex}\tTCS\t\\N\t1.50\t2026-11-24 09:30:00+00:00\t3",
        f"{row_id.hex}\t\tNSE\t\\N\t2026-11-24 09:30:00+00:00\t0",
    ]


def test_a_uuid_column_with_nulls_is_written_too() -> None:
    ids = [uuid.UUID(int=2), None]
    assert copy_text([ids]).decode().splitlines() == [str(ids[0]), "\\N"]


def test_tabs_newlines_and_backslashes_inside_values_are_escaped() -> None:
    text = copy_text(_rows(("a\tb", "line\nbreak", "back\\slash", "\\N", "cr\r", None)))
    assert text == b"a\\tb\tline\\nbreak\tback\\\\slash\t\\\\N\tcr\\r\t\\N\n"


def test_a_literal_backslash_n_is_not_taken_for_null() -> None:
    # As many backslashes as NULLs would fool a check that only counted them.
    assert copy_text(_rows(("x\\N", None))) == b"x\\\\N\t\\N\n"


def test_a_backslash_beside_nulls_in_one_column_is_escaped() -> None:
    # The column's NULLs hold a backslash each: only one more than those says a value holds one.
    assert copy_text([["a\\b", None]]) == b"a\\\\b\n\\N\n"
    assert copy_text([[None, "\\N"], [1, 2]]) == b"\\N\t1\n\\\\N\t2\n"


def test_no_rows_is_nothing() -> None:
    assert copy_text([]) == b""
    assert copy_text([[], []]) == b""


def test_bytes_are_bytea_hex_with_the_backslash_escaped() -> None:
    # str(b"...") would store the text "b'...'", and COPY would read a lone \x as an escape.
    text = copy_text(_rows((b"\x01\xab", "a\\b"), (None, "c")))
    assert text == b"\\\\x01ab\ta\\\\b\n\\N\tc\n"


def test_datetimes_are_written_once_per_object_and_alike_across_calls_sharing_their_texts() -> None:
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    same_instant_elsewhere = at.astimezone(timezone(timedelta(hours=5, minutes=30)))
    later = datetime(2026, 11, 24, 9, 45, 0, 250000, tzinfo=UTC)
    column = [at, same_instant_elsewhere, at, later]
    known: DatetimeTexts = {}
    assert copy_text([column], known).decode().splitlines() == list(map(str, column))
    assert known == {id(value): str(value) for value in column}
    assert copy_text([[later, at]], known) == copy_text([[later, at]])
