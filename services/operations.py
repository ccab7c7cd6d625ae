"""Operator tasks behind `portfolio-sync db upgrade` and `portfolio-sync topics create`."""

from __future__ import annotations

from shared import topics
from shared.bus.kafka import create_topics
from shared.db.engine import create_engine, upgrade_schema
from shared.settings import Settings


async def upgrade_database(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade_schema(engine)
    finally:
        await engine.dispose()
    print("database schema is up to date")


async def create_kafka_topics(settings: Settings, brokers: list[str]) -> None:
    wanted = topics.all_topics(brokers)
    created = await create_topics(
        settings.bootstrap_servers,
        wanted,
        partitions=settings.kafka_topic_partitions,
        namespace=settings.kafka_namespace,
    )
    print(f"{len(created)} topic(s) created, {len(wanted) - len(created)} already there")
    for name in created:
        print(f"  + {name}")
