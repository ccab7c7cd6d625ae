"""The ledger process on a three-broker Kafka cluster, one broker killed (`kill -9`) while snapshots
stream in: every snapshot is stored once and every change announced once.

The broker killed leads partition 0 of holdings.snapshots, so the ledger's consumer, its group and
its outbox relay (which publishes holdings.changes, a third of whose partitions that broker led too)
all meet the failover.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
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
from tests.support.kafka_cluster import KafkaCluster
from tests.support.processes import ServiceProcesses
from tests.support.snapshots import successive_snapshots
from tests.support.waiting import eventually

ACCOUNTS = 20
SNAPSHOTS_PER_ACCOUNT = 40
HOLDINGS_PER_SNAPSHOT = 10
CHUNK = 40  # snapshots per publish, as a fetcher fleet's steady output
CHUNK_INTERVAL_S = 0.1


async def _leader(servers: list[str], wire_topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        [described] = await admin.describe_topics([wire_topic])
    finally:
        await admin.close()
    return next(int(p["leader"]) for p in described["partitions"] if p["partition"] == partition)


async def test_a_broker_killed_under_the_ledger_loses_and_doubles_nothing(
    kafka_cluster: KafkaCluster, database_url: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    namespace = f"cluster-ledger-{uuid.uuid4().hex[:8]}."
    servers = kafka_cluster.servers
    await create_topics(servers, topics.all_topics([]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    accounts = [await create_account(sessions) for _ in range(ACCOUNTS)]
    sent = sorted(
        (s for a in accounts for s in _snapshots(a.id)),
        key=lambda s: s.taken_at,
    )

    async def stream() -> None:
        for first in range(0, len(sent), CHUNK):
            await bus.publish(
                [OutgoingMessage.of(topics.HOLDINGS_SNAPSHOTS, s) for s in sent[first : first + CHUNK]]
            )
            await asyncio.sleep(CHUNK_INTERVAL_S)  # the load's pace, not a wait for an outcome

    async def stored() -> int:
        async with sessions() as session:
            return await session.scalar(select(func.count()).select_from(Snapshot)) or 0

    ledger = ServiceProcesses(
        {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_cluster.bootstrap_servers,
            "KAFKA_NAMESPACE": namespace,
            "CREDENTIALS_KEYS": CredentialCipher.generate_key(),
            "LEDGER_BATCH_SIZE": "100",
        },
        tmp_path,
    )
    ledger.start("ledger", "ledger")
    streaming = asyncio.create_task(stream())
    started = time.monotonic()
    killed = 0
    try:

        async def a_third_stored() -> bool:
            ledger.assert_alive()
            return await stored() >= len(sent) // 3

        await eventually(
            a_third_stored, timeout_s=120, what="a third of the snapshots stored", interval_s=0.05
        )
        killed = await _leader(servers, namespace + topics.HOLDINGS_SNAPSHOTS, 0)
        kafka_cluster.kill(killed)
        stored_at_kill = await stored()

        async def all_stored() -> bool:
            ledger.assert_alive()
            return await stored() >= len(sent)

        await eventually(all_stored, timeout_s=120, what=f"all {len(sent)} snapshots stored")
        await streaming

        announced = await announced_changes(bus, group="cluster-observer", snapshots=len(sent))
        elapsed_s = time.monotonic() - started
    finally:
        streaming.cancel()
        codes = ledger.stop_all()
        await bus.close()
        if killed:
            kafka_cluster.start_node(killed)  # the session's cluster whole again for later tests

    async with sessions() as session:
        ids = Counter(await session.scalars(select(Snapshot.id)))
    sent_ids = {s.event_id for s in sent}
    duplicated = sum(n - 1 for n in ids.values() if n > 1)
    twice_announced = sum(n - 1 for n in Counter(a.snapshot_id for a in announced).values() if n > 1)
    print(
        f"\nledger on a 3-broker cluster, node {killed} killed with {stored_at_kill}/{len(sent)} stored: "
        f"stored={len(ids)} lost={len(sent_ids - set(ids))} duplicated={duplicated} "
        f"announced={len({a.snapshot_id for a in announced})} announced_twice={twice_announced} "
        f"in {elapsed_s:.1f} s"
    )
    assert stored_at_kill < len(sent), "the broker died while the ledger had work left"
    assert set(ids) == sent_ids and duplicated == 0
    assert {a.snapshot_id for a in announced} == sent_ids
    assert twice_announced == 0, "a change was announced twice"
    assert codes == {"ledger": 0}


def _snapshots(account_id: uuid.UUID) -> list[HoldingSnapshot]:
    return successive_snapshots(account_id, count=SNAPSHOTS_PER_ACCOUNT, holdings=HOLDINGS_PER_SNAPSHOT)
