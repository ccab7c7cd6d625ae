"""The months of the tables partitioned by time on Postgres (instrument_prices, raw_answers:
migration 0016), created ahead by the service that owns each table; SQLite keeps plain tables."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# This month and the next two: a service down for weeks still finds its months when it starts.
MONTHS_AHEAD = 2


async def create_months_ahead(conn: AsyncConnection, table: str) -> int:
    """Create the partitions of this month and the `MONTHS_AHEAD` after it that `table` lacks;
    return how many. Rows of a month without one go to the table's last partition (every time
    after the months made), where they stay."""
    if conn.dialect.name != "postgresql":
        return 0
    created = await conn.scalar(
        text("SELECT create_history_partitions(:table, :months)"), {"table": table, "months": MONTHS_AHEAD}
    )
    return int(created or 0)
