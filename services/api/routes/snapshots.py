"""An account's snapshot history, and the owner's review of a held snapshot.

The ledger holds a snapshot that empties an account, or drops most of its positions, while the
broker reported no error: it may be the broker failing quietly. The owner can look at it here and
accept it, or dismiss it; the ledger, not the API, then applies or drops it (SnapshotAccepted or
SnapshotDismissed on holdings.reviews, keyed by the account: the ledger takes them in order).
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, status

from services.api import paging, storage
from services.api.deps import Bus, CurrentUser, OwnedAccount, Session
from services.api.errors import unavailable
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import (
    HeldSnapshotAccept,
    HeldSnapshotAccepted,
    HeldSnapshotDismiss,
    HeldSnapshotDismissed,
    SnapshotDetailOut,
    SnapshotHoldingOut,
    SnapshotOut,
    SnapshotPage,
    SnapshotStatusOut,
)
from shared import topics
from shared.bus.port import BusUnavailable, MessageBus, OutgoingMessage
from shared.db.tables import BrokerAccount, Snapshot
from shared.events import Event, SnapshotAccepted, SnapshotDismissed

router = APIRouter(tags=["snapshots"], route_class=GuardedRoute)
log = logging.getLogger(__name__)

LIST = "snapshots"
"""The name cursors of this list carry: a cursor of another list is refused."""


@router.get(
    "/accounts/{account_id}/snapshots",
    summary="Snapshot history of an account",
    responses=error_responses(400, 401, 404),
)
async def list_snapshots(
    account: OwnedAccount, session: Session, page: Annotated[paging.PageRequest, paging.page_request(50)]
) -> SnapshotPage:
    """Every snapshot the account received, newest `taken_at` first, whatever became of it
    (`status`), one page at a time: follow `next_cursor`."""
    rows = await storage.account_snapshots(session, account.id, after=page.after(LIST), limit=page.limit + 1)
    items, next_cursor = paging.page_of(
        LIST, rows, page.limit, position=_position, item=SnapshotOut.model_validate
    )
    return SnapshotPage(items=items, next_cursor=next_cursor)


def _position(snapshot: Snapshot) -> paging.Position:
    return paging.Position(at=snapshot.taken_at, id=snapshot.id)


@router.get(
    "/accounts/{account_id}/snapshots/{snapshot_id}",
    summary="One snapshot of an account, with its holdings",
    responses=error_responses(401, 404),
)
async def read_snapshot(snapshot_id: uuid.UUID, account: OwnedAccount, session: Session) -> SnapshotDetailOut:
    """A snapshot and what it lists; look at a held snapshot here before accepting it."""
    found = await storage.account_snapshot(session, account_id=account.id, snapshot_id=snapshot_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "snapshot not found")
    snapshot, holdings = found
    return SnapshotDetailOut(
        id=snapshot.id,
        taken_at=snapshot.taken_at,
        received_at=snapshot.received_at,
        status=SnapshotStatusOut(snapshot.status),
        holdings_count=snapshot.holdings_count,
        holdings=[SnapshotHoldingOut.of(h) for h in holdings],
    )


@router.post(
    "/accounts/{account_id}/held-snapshot/accept",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Accept the account's held snapshot",
    responses=error_responses(401, 404, 409, 503),
)
async def accept_held_snapshot(
    body: HeldSnapshotAccept, account: OwnedAccount, user: CurrentUser, bus: Bus
) -> HeldSnapshotAccepted:
    """Tell the ledger that the held snapshot is real: it becomes the account's positions, and the
    trades that explain the change are derived as for any other snapshot.

    Asynchronous: once the ledger applied it, `held_snapshot` of GET /v1/accounts/{id} is null and
    the snapshot's status is `applied`. A sync that arrives first may settle the snapshot itself
    (confirm or dismiss it); the acceptance then changes nothing.
    """
    _still_held(account, body.snapshot_id, "accept")
    accepted = SnapshotAccepted(account_id=account.id, snapshot_id=body.snapshot_id, accepted_by=user.id)
    await _send_review(bus, accepted, body.snapshot_id, "acceptance")
    return HeldSnapshotAccepted(snapshot_id=body.snapshot_id, accepted_by=user.id)


@router.post(
    "/accounts/{account_id}/held-snapshot/dismiss",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Dismiss the account's held snapshot",
    responses=error_responses(401, 404, 409, 503),
)
async def dismiss_held_snapshot(
    body: HeldSnapshotDismiss, account: OwnedAccount, user: CurrentUser, bus: Bus
) -> HeldSnapshotDismissed:
    """Tell the ledger that the held snapshot is wrong (the broker failed quietly): it never becomes
    the account's positions, and nothing is derived from it.

    Asynchronous: once the ledger dropped it, `held_snapshot` of GET /v1/accounts/{id} is null and
    the snapshot's status is `dismissed`. A sync that arrives first may settle the snapshot itself;
    the dismissal then changes nothing.
    """
    _still_held(account, body.snapshot_id, "dismiss")
    dismissed = SnapshotDismissed(account_id=account.id, snapshot_id=body.snapshot_id, dismissed_by=user.id)
    await _send_review(bus, dismissed, body.snapshot_id, "dismissal")
    return HeldSnapshotDismissed(snapshot_id=body.snapshot_id, dismissed_by=user.id)


def _still_held(account: BrokerAccount, snapshot_id: uuid.UUID, verb: str) -> None:
    """409 unless `snapshot_id` is the snapshot the account holds for review."""
    if account.held_snapshot_id is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "this account holds no snapshot for review: a later sync may have confirmed or dismissed "
            f"it (see GET /v1/accounts/{account.id}/snapshots)",
        )
    if account.held_snapshot_id != snapshot_id:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"this account holds snapshot {account.held_snapshot_id} for review, not "
            f"{snapshot_id}: look at it (GET /v1/accounts/{account.id}/snapshots/"
            f"{account.held_snapshot_id}), then {verb} it by that id",
        )


async def _send_review(bus: MessageBus, review: Event, snapshot_id: uuid.UUID, what: str) -> None:
    """Publish the owner's decision on holdings.reviews (503 when the bus is down)."""
    context = {
        "account_id": str(review.account_id),
        "snapshot_id": str(snapshot_id),
        "event_id": str(review.event_id),
        "decision": what,
    }
    try:
        await bus.publish([OutgoingMessage.of(topics.SNAPSHOT_REVIEWS, review)])
    except BusUnavailable:
        log.exception("held snapshot review not published", extra=context)
        raise unavailable(f"the {what} could not be sent (message bus unavailable): try again") from None
    log.info("held snapshot reviewed", extra=context)
