"""`python -m tests.chaos.table ROWS.jsonl DOC.md`: the chaos runs' rows as a markdown table, with the
date and commit, printed and written into DOC.md between its chaos-table markers."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.faults import FAULTS

BEGIN, END = "<!-- chaos-table:begin -->", "<!-- chaos-table:end -->"
COLUMNS = {
    "fault": "fault",
    "requests": "requests",
    "refused": "refused (503)",
    "snapshots": "snapshots",
    "lost": "lost",
    "requested_twice": "requested twice",
    "applied_twice": "applied twice",
    "announced_twice": "announced twice",
    "out_of_order": "out of order",
    "unannounced": "unannounced",
    "transactions_doubled": "trades doubled",
    "trades_off_positions": "trades ≠ positions",
    "positions_off_broker": "positions ≠ broker",
    "runs_off_snapshots": "runs ≠ snapshots",
    "exited": "exited",
    "seconds": "s",
}


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False).stdout.strip()

    dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        f"Last run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit `{_commit()}`, `make chaos` "
        "(CHAOS_LEVEL=long). Every column from *lost* to *exited* must be 0.",
        "",
        "| " + " | ".join(COLUMNS.values()) + " |",
        "|" + "|".join("---" if key == "fault" else "---:" for key in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "—")) for key in COLUMNS) + " |")
    ran = {row["fault"] for row in rows}
    for fault in FAULTS:
        if fault.name not in ran:  # it failed before its counts (see the test's output)
            lines.append(f"| {fault.name} | did not finish |" + " |" * (len(COLUMNS) - 2))
    return "\n".join(lines)


def main(rows_path: str, doc_path: str) -> None:
    source = Path(rows_path)
    rows = [json.loads(line) for line in source.read_text().splitlines()] if source.exists() else []
    table = render(rows)
    print(table)
    doc = Path(doc_path)
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")


if __name__ == "__main__":
    main(*sys.argv[1:])
