"""`kill -9` the ledger in the middle of its batches, restart it, and count: every snapshot sent is
in Postgres exactly once, and every change it made is announced on holdings.changes once, each
account's in order.

Kill points are fractions of the run; override them with LEDGER_KILL_POINTS=0.1,0.45,0.9.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.bus.port import OutgoingMessage
from shared.credentials import CredentialCipher
from shared.db.tables import Snapshot
from shared.events import HoldingSnapshot
from tests.support.accounts import create_account
from tests.support.announcements import announced_changes
from tests.support.infra import KafkaService
from tests.support.processes import ServiceProcesses
from tests.support.snapshots import successive_snapshots
from tests.support.waiting import eventually

ACCOUNTS = 40
SNAPSHOTS_PER_ACCOUNT = 50
HOLDINGS_PER_SNAPSHOT = 20
KILL_POINTS = [float(p) for p in os.environ.get("LEDGER_KILL_POINTS", "0.15,0.5,0.85").split(",")]


async def test_kill_9_mid_batch_loses_and_doubles_nothing(
    kafka: KafkaService, database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    namespace = f"kill9-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics([]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    accounts = [await create_account(sessions) for _ in range(ACCOUNTS)]
    sent = [s for a in accounts for s in _snapshots(a.id)]
    # Interleave accounts as a fetcher fleet would; each account's own order is kept by its key.
    sent.sort(key=lambda s: s.taken_at)
    await bus.publish([OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, s) for s in sent])

    ledger = ServiceProcesses(
        {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_NAMESPACE": namespace,
            "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
            "LEDGER_BATCH_SIZE": "100",
        },
        tmp_path,
    )

    async def stored() -> int:
        async with sessions() as session:
            return await session.scalar(select(func.count()).select_from(Snapshot)) or 0

    kills = []
    try:
        for point in KILL_POINTS:
            ledger.start("ledger", "ledger")
            target = int(point * len(sent))

            async def reached(target: int = target) -> bool:
                ledger.assert_alive()
                return await stored() >= target

            await eventually(reached, timeout_s=120, what=f"{target} snapshots stored", interval_s=0.01)
            ledger.kill_hard("ledger")
            kills.append(await stored())
        ledger.start("ledger", "ledger")

        async def all_stored() -> bool:
            ledger.assert_alive()
            return await stored() >= len(sent)

        await eventually(all_stored, timeout_s=180, what=f"all {len(sent)} snapshots stored")

        announced = await announced_changes(bus, group="kill9-observer", snapshots=len(sent))
    finally:
        codes = ledger.stop_all()
        await bus.close()

    async with sessions() as session:
        ids = Counter(await session.scalars(select(Snapshot.id)))
        rows = await session.scalar(select(func.sum(Snapshot.holdings_count)))
    sent_ids = {s.event_id for s in sent}
    lost = sent_ids - set(ids)
    duplicated = sum(n - 1 for n in ids.values() if n > 1)
    twice_announced = sum(n - 1 for n in Counter(a.snapshot_id for a in announced).values() if n > 1)
    # One account's changes share a partition, so `announced` holds each account's in the log's order.
    taken_at = {s.event_id: s.taken_at for s in sent}
    by_account: dict[uuid.UUID, list[uuid.UUID]] = {}
    for change in announced:
        by_account.setdefault(change.account_id, []).append(change.snapshot_id)
    out_of_order = sum(
        1 for ids_ in by_account.values() if [taken_at[i] for i in ids_] != sorted(taken_at[i] for i in ids_)
    )
    print(
        f"ledger kill -9 at {KILL_POINTS} (stored then: {kills}): sent={len(sent)} stored={len(ids)} "
        f"lost={len(lost)} duplicated={duplicated} holdings_rows={rows} "
        f"announced={len({a.snapshot_id for a in announced})} announced_twice={twice_announced} "
        f"accounts_out_of_order={out_of_order}"
    )
    assert len(kills) == len(KILL_POINTS) and kills[-1] < len(sent), "every kill hit a ledger mid-stream"
    assert (len(lost), duplicated) == (0, 0)
    assert set(ids) == sent_ids
    assert rows == len(sent) * HOLDINGS_PER_SNAPSHOT
    assert {a.snapshot_id for a in announced} == sent_ids
    assert twice_announced == 0, "a change was announced twice"
    assert out_of_order == 0, "an account's changes were announced out of the order they were taken"
    assert codes == {"ledger": 0}


def _snapshots(account_id: uuid.UUID) -> list[HoldingSnapshot]:
    return successive_snapshots(account_id, count=SNAPSHOTS_PER_ACCOUNT, holdings=HOLDINGS_PER_SNAPSHOT)
