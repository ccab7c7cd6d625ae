"""Webhook endpoints and replay requests (the API's tables); the delivery log and each endpoint's
state are the delivery service's, read here. Each writing function commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api import paging
from shared.db.tables import Portfolio, WebhookDelivery, WebhookEndpoint, WebhookEndpointState, WebhookReplay
from shared.events import utc_now
from shared.webhooks import WEBHOOK_EVENT_TYPES, new_secret

EndpointRow = tuple[WebhookEndpoint, WebhookEndpointState | None]


def _in_order(event_types: Sequence[str]) -> str:
    return ",".join(t for t in WEBHOOK_EVENT_TYPES if t in event_types)


async def create_endpoint(
    session: AsyncSession, portfolio_id: uuid.UUID, *, url: str, event_types: Sequence[str], description: str
) -> WebhookEndpoint:
    now = utc_now()
    endpoint = WebhookEndpoint(
        portfolio_id=portfolio_id,
        url=url,
        event_types=_in_order(event_types),
        description=description,
        secret=new_secret(),
        created_at=now,
        enabled_at=now,
    )
    session.add(endpoint)
    await session.commit()
    return endpoint


async def owned_endpoint(
    session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID
) -> EndpointRow | None:
    query = (
        _with_state(select(WebhookEndpoint, WebhookEndpointState))
        .join(Portfolio, Portfolio.id == WebhookEndpoint.portfolio_id)
        .where(WebhookEndpoint.id == endpoint_id, Portfolio.user_id == user_id)
    )
    row = (await session.execute(query)).one_or_none()
    return None if row is None else (row[0], row[1])


async def portfolio_endpoints(
    session: AsyncSession, portfolio_id: uuid.UUID, *, after: paging.Position | None, limit: int
) -> list[EndpointRow]:
    query = _with_state(select(WebhookEndpoint, WebhookEndpointState)).where(
        WebhookEndpoint.portfolio_id == portfolio_id
    )
    query = paging.keyset(
        query, WebhookEndpoint.created_at, WebhookEndpoint.id, after=after, limit=limit, newest_first=False
    )
    return [(e, s) for e, s in (await session.execute(query))]


_Rows = Select[WebhookEndpoint, WebhookEndpointState]


def _with_state(query: _Rows) -> _Rows:
    return query.outerjoin(WebhookEndpointState, WebhookEndpointState.endpoint_id == WebhookEndpoint.id)


async def update_endpoint(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    url: str | None,
    event_types: Sequence[str] | None,
    description: str | None,
    enable: bool,
) -> None:
    if url is not None:
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = _in_order(event_types)
    if description is not None:
        endpoint.description = description
    if enable:
        endpoint.enabled_at = utc_now()
    await session.commit()


async def rotate_secret(session: AsyncSession, endpoint: WebhookEndpoint, *, grace: timedelta) -> None:
    endpoint.previous_secret = endpoint.secret if grace else None
    endpoint.previous_secret_until = utc_now() + grace if grace else None
    endpoint.secret = new_secret()
    await session.commit()


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    await session.delete(endpoint)
    await session.commit()


async def deliveries(
    session: AsyncSession, endpoint_id: uuid.UUID, *, after: paging.Position | None, limit: int
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    query = paging.keyset(
        query, WebhookDelivery.created_at, WebhookDelivery.id, after=after, limit=limit, newest_first=True
    )
    return (await session.scalars(query)).all()


async def delivery_exists(session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
        )
    )
    return found is not None


async def request_replay(
    session: AsyncSession, endpoint_id: uuid.UUID, *, delivery_id: uuid.UUID | None, since: datetime | None
) -> WebhookReplay:
    replay = WebhookReplay(
        endpoint_id=endpoint_id, delivery_id=delivery_id, since=since, requested_at=utc_now()
    )
    session.add(replay)
    await session.commit()
    return replay
