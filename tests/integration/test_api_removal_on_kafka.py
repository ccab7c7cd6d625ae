"""Deleting through the API on real Postgres and real Kafka: AccountRemoved reaches holdings.changes,
keyed by the account, and nothing of the deleted portfolio is left."""

from __future__ import annotations

import uuid

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import ApiResources, create_app
from shared import topics
from shared.bus.kafka import KafkaBus
from shared.credentials import CredentialCipher
from shared.db.tables import BrokerAccount, Portfolio, Schedule
from shared.events import AccountRemoved, decode_event
from shared.settings import Settings


async def test_deleting_a_portfolio_announces_each_account_on_kafka_and_leaves_nothing(
    engine: AsyncEngine, database_url: str, kafka_bus: KafkaBus
) -> None:
    settings = Settings(
        database_url=database_url, credentials_keys=SecretStr(CredentialCipher.generate_key())
    )
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    app = create_app(settings, resources=ApiResources(engine=engine, bus=kafka_bus, cipher=cipher))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
        token = (await http.post("/v1/users", json={"email": "leaver@example.com"})).json()["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        portfolio = (await http.post("/v1/portfolios", json={"name": "Old"}, headers=headers)).json()["id"]
        accounts = set()
        for label in ("a", "b"):
            created = await http.post(
                f"/v1/portfolios/{portfolio}/accounts",
                json={"broker": "sim", "label": label},
                headers=headers,
            )
            accounts.add(created.json()["id"])

        deleted = await http.delete(f"/v1/portfolios/{portfolio}", headers=headers)

        assert deleted.status_code == 204, deleted.text
        assert (await http.get(f"/v1/portfolios/{portfolio}", headers=headers)).status_code == 404
    records = await kafka_bus.recent(topics.HOLDINGS_CHANGES, per_partition=10)
    removed = [decode_event(AccountRemoved, r.value) for r in records]
    assert {str(event.account_id) for event in removed} == accounts
    assert all(r.key == str(decode_event(AccountRemoved, r.value).account_id) for r in records)
    assert {str(event.portfolio_id) for event in removed} == {portfolio}
    async with engine.connect() as conn:
        for table, column in ((Portfolio, Portfolio.id), (BrokerAccount, BrokerAccount.portfolio_id)):
            left = await conn.scalar(
                select(func.count()).select_from(table).where(column == uuid.UUID(portfolio))
            )
            assert left == 0, table.__tablename__
        schedules = await conn.scalar(
            select(func.count())
            .select_from(Schedule)
            .where(Schedule.account_id.in_([uuid.UUID(a) for a in accounts]))
        )
    assert schedules == 0
