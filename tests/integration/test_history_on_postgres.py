"""History as versions on real Postgres: migration 0014 and moving old-layout history, the retention
of unchanged snapshots and the closing versions kept or written (the unit layer's tests), and what a
COPY stores."""

import uuid
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ledger.handlers import Ledger
from services.ledger.versions import content_hash
from shared.bus.memory import InMemoryBus
from shared.db.tables import Snapshot
from shared.events import Holding, HoldingSnapshot, utc_now
from tests.support.accounts import create_account
from tests.unit.test_history_migration import (  # noqa: F401  (run again here)
    test_a_ledger_batch_planned_before_the_move_is_refused_and_planned_again,
    test_a_replay_of_the_current_snapshot_before_the_move_keeps_its_versions_and_closes_the_rest,
    test_a_sync_the_ledger_applies_before_the_move_is_not_moved_and_reads_right,
    test_history_moves_into_versions_and_reads_as_before,
)
from tests.unit.test_snapshot_retention import (  # noqa: F401  (run again here)
    test_the_last_unchanged_snapshot_before_a_pause_stays_and_keeps_the_days_closing_price,
    test_unchanged_snapshots_past_the_retention_go_and_as_of_reads_keep_their_positions,
)
from tests.unit.test_version_closes import (  # noqa: F401  (run again here)
    test_a_correction_of_the_current_snapshot_keeps_the_closes_of_its_time,
    test_the_sync_after_an_accepted_snapshot_closes_every_position_the_versions_hold_open,
)


async def test_a_batch_written_by_copy_stores_each_snapshots_content_hash(
    sessions: async_sessionmaker[AsyncSession], bus: InMemoryBus
) -> None:
    """A batch of more than INSERT_AT_MOST rows goes in by COPY: the hash's bytes too."""
    accounts = [await create_account(sessions) for _ in range(60)]
    holdings = tuple(
        Holding(
            symbol=f"S{i}", exchange="NSE", currency="INR", quantity=Decimal(i + 1), average_price=Decimal(9)
        )
        for i in range(20)
    )
    sent = [
        HoldingSnapshot(
            account_id=a.id, request_id=uuid.uuid4(), broker="sim", taken_at=utc_now(), holdings=holdings
        )
        for a in accounts
    ]
    await Ledger(sessions=sessions, bus=bus).apply_batch(sent)
    async with sessions() as session:
        stored = set(
            await session.scalars(
                select(Snapshot.content_hash).where(Snapshot.id.in_([s.event_id for s in sent]))
            )
        )
    assert stored == {content_hash(holdings)}
