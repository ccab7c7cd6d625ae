"""What parsing a statement yields: the holdings, or every problem that stopped it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from shared.events import Holding

_PROBLEMS_IN_MESSAGE = 5


class StatementFormat(enum.StrEnum):
    GENERIC = "generic"
    ZERODHA_CONSOLE = "zerodha_console"


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why one line (1-based, the header is line 1) cannot be imported; line 0 is the file as a whole."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class StatementRejected(ValueError):
    """The file is not imported at all: `problems` lists every problem found, in line order."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        if not problems:
            raise ValueError("a rejected statement needs at least one problem")
        self.problems = sorted(problems, key=lambda p: p.line)
        shown = "; ".join(str(p) for p in self.problems[:_PROBLEMS_IN_MESSAGE])
        more = len(self.problems) - _PROBLEMS_IN_MESSAGE
        super().__init__(
            f"statement rejected: {len(self.problems)} problem(s): {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    format: StatementFormat
    holdings: tuple[Holding, ...]
    statement_date: date | None = None
    """The day the file describes, when the format states it (the Zerodha Console's "as on" line)."""
