"""`holdings.current` on real Kafka and Postgres: the topic is compacted, and the plain aiokafka
subscriber (examples/subscribers/aiokafka_positions.py) bootstraps each account's latest positions
from it, then follows the changes and the removal."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from examples.subscribers.aiokafka_positions import Positions
from services.api.removal import remove_account
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.kafka import KafkaBus, create_topics
from shared.db.tables import OutboxMessage
from shared.events import Holding, HoldingSnapshot, utc_now
from tests.support.accounts import create_account
from tests.support.infra import KafkaService
from tests.support.waiting import eventually

T0 = utc_now() - timedelta(hours=1)


@pytest.fixture
async def namespaced(kafka: KafkaService) -> AsyncIterator[tuple[KafkaBus, str]]:
    namespace = f"it-{uuid.uuid4().hex[:8]}."
    servers = kafka.bootstrap_servers.split(",")
    await create_topics(servers, topics.all_topics(["sim"]), partitions=4, namespace=namespace)
    bus = KafkaBus(servers, namespace=namespace)
    await bus.start()
    yield bus, namespace
    await bus.close()


def _snapshot(account_id: uuid.UUID, minute: int, **quantities: int) -> HoldingSnapshot:
    return HoldingSnapshot(
        account_id=account_id,
        request_id=uuid.uuid4(),
        broker="sim",
        taken_at=T0 + timedelta(minutes=minute),
        holdings=tuple(
            Holding(
                symbol=symbol, exchange="NSE", currency="INR", quantity=Decimal(q), average_price=Decimal(1)
            )
            for symbol, q in quantities.items()
        ),
    )


async def _all_relayed(ledger: Ledger, sessions: async_sessionmaker[AsyncSession]) -> None:
    """Wait until the outbox is empty. The last batch's relay runs in the background, and one that
    Kafka refused (topics this new may have no leader yet) leaves its rows to the sweep, which a
    running ledger does every second: wait for the first, do the second here."""
    await ledger.relay.settle()

    async def empty() -> bool:
        await ledger.relay.publish_pending()
        async with sessions() as session:
            return not await session.scalar(select(func.count()).select_from(OutboxMessage))

    await eventually(empty, what="every outbox message published")


def _quantities(subscriber: Positions, account_id: uuid.UUID) -> dict[str, Decimal] | None:
    state = subscriber.accounts.get(str(account_id))
    return None if state is None else {k: Decimal(q) for k, q in state["positions"].items()}


async def test_holdings_current_is_created_compacted(
    kafka: KafkaService, namespaced: tuple[KafkaBus, str]
) -> None:
    _, namespace = namespaced
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, namespace + topics.HOLDINGS_CURRENT, {"cleanup.policy": None}
                )
            ]
        )
    finally:
        await admin.close()
    [entry] = response.to_object()["resources"][0]["config_entries"]
    assert entry["config_value"] == "compact"


async def test_a_subscriber_bootstraps_every_accounts_latest_positions_then_follows_changes_and_removal(
    kafka: KafkaService, namespaced: tuple[KafkaBus, str], sessions: async_sessionmaker[AsyncSession]
) -> None:
    bus, namespace = namespaced
    ledger = Ledger(sessions=sessions, bus=bus)
    accounts = [await create_account(sessions) for _ in range(3)]
    for minute in (1, 2, 3):
        await ledger.apply_batch(
            [_snapshot(a.id, minute, TCS=minute * 10 + i) for i, a in enumerate(accounts)]
        )
    await ledger.apply_batch([_snapshot(accounts[0].id, 4, TCS=31, INFY=5)])
    await _all_relayed(ledger, sessions)

    subscriber = Positions(kafka.bootstrap_servers, namespace=namespace)
    try:
        await subscriber.bootstrap()
        assert {a.id: _quantities(subscriber, a.id) for a in accounts} == {
            accounts[0].id: {"TCS@NSE": 31, "INFY@NSE": 5},
            accounts[1].id: {"TCS@NSE": 31},
            accounts[2].id: {"TCS@NSE": 32},
        }

        await ledger.apply_batch([_snapshot(accounts[1].id, 5, WIPRO=7)])  # TCS closed, WIPRO opened
        await _all_relayed(ledger, sessions)
        async with sessions() as session:
            await remove_account(session, bus, accounts[2].id)

        async def followed() -> bool:
            await subscriber.step(timeout_ms=500)
            return _quantities(subscriber, accounts[1].id) == {"WIPRO@NSE": 7} and (
                _quantities(subscriber, accounts[2].id) is None
            )

        await eventually(followed, timeout_s=30, what="the change and the removal to reach the subscriber")
        assert _quantities(subscriber, accounts[0].id) == {"TCS@NSE": 31, "INFY@NSE": 5}
    finally:
        await subscriber.close()
