"""`portfolio-sync trace RUN_ID`: one sync run's path, read from the database (DATABASE_URL)."""

from __future__ import annotations

import sys
import uuid

from shared.db.engine import assert_schema_current, create_engine, session_factory
from shared.run_trace import load_run_trace, trace_lines
from shared.settings import Settings


async def print_run_trace(settings: Settings, run_id: uuid.UUID) -> int:
    """Print the run's trace; exit status 1 for a run the database does not know."""
    engine = create_engine(settings.database_url)
    try:
        await assert_schema_current(engine)
        async with session_factory(engine)() as session:
            trace = await load_run_trace(session, run_id)
    finally:
        await engine.dispose()
    if trace is None:
        print(f"portfolio-sync trace: no sync run {run_id}", file=sys.stderr)
        return 1
    print("\n".join(trace_lines(trace)))
    return 0
