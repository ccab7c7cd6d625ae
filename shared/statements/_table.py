"""From bytes to rows of text cells, each with the line of the file it starts on."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

from shared.statements._model import RowProblem, StatementRejected

MAX_STATEMENT_BYTES = 5 * 1024 * 1024
MAX_STATEMENT_ROWS = 50_000
"""Most data rows (holdings) in one statement, the header and blank lines not counted."""

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    """1-based line of the file where the row starts (a quoted cell may span several lines)."""
    cells: tuple[str, ...]
    """Each cell with surrounding whitespace removed."""

    @property
    def blank(self) -> bool:
        return not any(self.cells)


class UnreadableCsv(Exception):
    """The CSV syntax breaks at `problem.line`: nothing after it can be read reliably."""

    def __init__(self, problem: RowProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def decode(data: bytes) -> str:
    """UTF-8 text, a byte-order mark dropped; anything else is rejected with the line at fault."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise StatementRejected(
            [RowProblem(0, f"the file is larger than the limit of 5 MB ({MAX_STATEMENT_BYTES} bytes)")]
        )
    if data.startswith(_UTF16_BOMS):
        raise StatementRejected([RowProblem(1, "the file is UTF-16 text: save it as CSV in UTF-8")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        raise StatementRejected(
            [RowProblem(line, f"byte 0x{byte:02X} at column {column} is not UTF-8: save the file as UTF-8")]
        ) from None
    if not text.strip():
        raise StatementRejected(
            [RowProblem(1, "the file is empty: expected a header row, then one row per holding")]
        )
    return text


def read_rows(text: str) -> Iterator[Row]:
    """Comma-separated rows, lazily; raises UnreadableCsv where the quoting is broken."""
    # newline="" leaves line endings to the csv module, so a quoted cell may hold one.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise UnreadableCsv(
                RowProblem(start, f"malformed CSV ({exc}): check the quotes on this line")
            ) from None
        yield Row(start, tuple(cell.strip() for cell in cells))
