"""Webhook endpoints of a portfolio: register, read, change, rotate the secret, remove; their
delivery log, and replays. Sending is the delivery service's (`portfolio-sync webhooks`)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status

from services.api import paging, storage_webhooks
from services.api.deps import CurrentUser, OwnedPortfolio, Session
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas_webhooks import (
    DeliveryOut,
    DeliveryPage,
    ReplayCreate,
    ReplayOut,
    SecretRotation,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointPage,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from shared.db.tables import WebhookDelivery, WebhookEndpoint, WebhookEndpointState
from shared.events import utc_now

router = APIRouter(tags=["webhooks"], route_class=GuardedRoute)

LIST, DELIVERIES = "webhooks", "webhook-deliveries"
PATH = "/webhooks/{endpoint_id}"


async def owned_endpoint(
    endpoint_id: uuid.UUID, user: CurrentUser, session: Session
) -> storage_webhooks.EndpointRow:
    found = await storage_webhooks.owned_endpoint(session, user.id, endpoint_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "webhook endpoint not found")
    return found


OwnedEndpoint = Annotated[storage_webhooks.EndpointRow, Depends(owned_endpoint)]


def endpoint_out(endpoint: WebhookEndpoint, state: WebhookEndpointState | None) -> WebhookEndpointOut:
    now = utc_now()
    # Disabled by the delivery service since its owner last enabled it (see WebhookEndpoint).
    disabled = (
        state is not None and state.disabled_at is not None and state.disabled_at >= endpoint.enabled_at
    )
    # Failures from before the owner enabled it again count no more.
    counts = state is not None and (state.disabled_at is None or disabled)
    previous_until = endpoint.previous_secret_until
    return WebhookEndpointOut(
        id=endpoint.id,
        portfolio_id=endpoint.portfolio_id,
        url=endpoint.url,
        event_types=endpoint.event_types.split(","),
        description=endpoint.description,
        created_at=endpoint.created_at,
        state="disabled" if disabled else "active",
        disabled_at=state.disabled_at if disabled and state else None,
        disabled_reason=state.disabled_reason if disabled and state else None,
        consecutive_failures=state.consecutive_failures if counts and state else 0,
        last_success_at=state.last_success_at if state else None,
        previous_secret_valid_until=previous_until if previous_until and previous_until > now else None,
    )


@router.post(
    "/portfolios/{portfolio_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    responses=error_responses(401, 404),
)
async def create_webhook(
    body: WebhookEndpointCreate, portfolio: OwnedPortfolio, session: Session
) -> WebhookEndpointWithSecret:
    """Register an endpoint for the portfolio's events; the response holds its signing secret, shown
    this once. Deliveries go only to public addresses unless the operator allowed a network
    (WEBHOOKS_ALLOWED_NETWORKS); an attempt to another address fails and is logged."""
    endpoint = await storage_webhooks.create_endpoint(
        session, portfolio.id, url=body.url, event_types=body.event_types, description=body.description
    )
    return WebhookEndpointWithSecret(**endpoint_out(endpoint, None).model_dump(), secret=endpoint.secret)


@router.get(
    "/portfolios/{portfolio_id}/webhooks",
    summary="List a portfolio's webhook endpoints",
    responses=error_responses(400, 401, 404),
)
async def list_webhooks(
    portfolio: OwnedPortfolio,
    session: Session,
    page: Annotated[paging.PageRequest, paging.page_request(100)],
) -> WebhookEndpointPage:
    rows = await storage_webhooks.portfolio_endpoints(
        session, portfolio.id, after=page.after(LIST), limit=page.limit + 1
    )
    items, next_cursor = paging.page_of(
        LIST,
        rows,
        page.limit,
        position=lambda row: paging.Position(row[0].created_at, row[0].id),
        item=lambda row: endpoint_out(*row),
    )
    return WebhookEndpointPage(items=items, next_cursor=next_cursor)


@router.get(PATH, summary="Get a webhook endpoint, with its state", responses=error_responses(401, 404))
async def read_webhook(found: OwnedEndpoint) -> WebhookEndpointOut:
    return endpoint_out(*found)


@router.patch(
    PATH, summary="Change a webhook endpoint, or enable it again", responses=error_responses(401, 404)
)
async def update_webhook(
    body: WebhookEndpointUpdate, found: OwnedEndpoint, session: Session
) -> WebhookEndpointOut:
    endpoint, state = found
    await storage_webhooks.update_endpoint(
        session,
        endpoint,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        enable=body.enabled is True,
    )
    return endpoint_out(endpoint, state)


@router.post(
    PATH + "/secret/rotate",
    summary="Rotate a webhook endpoint's signing secret",
    responses=error_responses(401, 404),
)
async def rotate_webhook_secret(
    body: SecretRotation, found: OwnedEndpoint, session: Session
) -> WebhookEndpointWithSecret:
    """A new secret, shown this once. Until `previous_secret_valid_until` (`grace_seconds` from now)
    each delivery carries a signature with each secret, so receivers can switch at their pace."""
    endpoint, state = found
    await storage_webhooks.rotate_secret(session, endpoint, grace=timedelta(seconds=body.grace_seconds))
    return WebhookEndpointWithSecret(**endpoint_out(endpoint, state).model_dump(), secret=endpoint.secret)


@router.delete(
    PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a webhook endpoint",
    responses=error_responses(401, 404),
)
async def delete_webhook(found: OwnedEndpoint, session: Session) -> Response:
    """The endpoint goes with its delivery log; nothing more is sent to it."""
    await storage_webhooks.delete_endpoint(session, found[0])
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut.model_validate(
        {
            **{k: getattr(delivery, k) for k in DeliveryOut.model_fields if k != "payload"},
            "payload": json.loads(delivery.body),
        }
    )


@router.get(
    PATH + "/deliveries",
    summary="A webhook endpoint's delivery log",
    responses=error_responses(400, 401, 404),
)
async def list_webhook_deliveries(
    found: OwnedEndpoint, session: Session, page: Annotated[paging.PageRequest, paging.page_request(50)]
) -> DeliveryPage:
    """Every delivery to the endpoint, newest first: what was sent, how each went, when the next
    attempt is due."""
    rows = await storage_webhooks.deliveries(
        session, found[0].id, after=page.after(DELIVERIES), limit=page.limit + 1
    )
    items, next_cursor = paging.page_of(
        DELIVERIES,
        rows,
        page.limit,
        position=lambda d: paging.Position(d.created_at, d.id),
        item=delivery_out,
    )
    return DeliveryPage(items=items, next_cursor=next_cursor)


@router.post(
    PATH + "/replays",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send logged deliveries again",
    responses=error_responses(401, 404),
)
async def replay_webhook_deliveries(body: ReplayCreate, found: OwnedEndpoint, session: Session) -> ReplayOut:
    """Send one logged delivery again (`delivery_id`), or every delivery since a time (`since`), with
    the same `webhook-id` and body, newly signed. The delivery service queues them within a few
    seconds; they appear in the delivery log with this replay's id."""
    endpoint = found[0]
    if body.delivery_id is not None and not await storage_webhooks.delivery_exists(
        session, endpoint.id, body.delivery_id
    ):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such delivery of this endpoint")
    replay = await storage_webhooks.request_replay(
        session, endpoint.id, delivery_id=body.delivery_id, since=body.since
    )
    return ReplayOut.model_validate(replay)
