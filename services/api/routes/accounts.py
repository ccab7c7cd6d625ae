"""Broker accounts, their sync status, and their write-only credentials."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Response, status
from fastapi.exceptions import RequestValidationError

from services.api import paging, storage, storage_edits
from services.api.deps import ApiSettings, BrokerTypes, Cipher, OwnedAccount, OwnedPortfolio, Session
from services.api.guard import GuardedRoute
from services.api.routes import error_responses
from services.api.schemas import (
    AccountCreate,
    AccountOut,
    AccountPage,
    AccountUpdate,
    CredentialsIn,
    HeldSnapshotOut,
)
from shared.brokers import BrokerType
from shared.credentials import CredentialCipher
from shared.db.schedule_rules import rule_of
from shared.events import utc_now
from shared.statements import STATEMENT_BROKER

router = APIRouter(tags=["accounts"], route_class=GuardedRoute)
log = logging.getLogger(__name__)

LIST = "accounts"
"""The name cursors of this list carry: a cursor of another list is refused."""


def _invalid(field: str, kind: str, message: str) -> RequestValidationError:
    """A 422 shaped like FastAPI's own, so clients read every validation error the same way."""
    return RequestValidationError([{"type": kind, "loc": ("body", field), "msg": message}])


def _account_out(view: storage.AccountView) -> AccountOut:
    account, schedule, held = view.account, view.schedule, view.held_snapshot
    return AccountOut(
        id=account.id,
        portfolio_id=account.portfolio_id,
        broker=account.broker,
        label=account.label,
        created_at=account.created_at,
        sync_interval_seconds=schedule.interval_seconds if schedule and schedule.kind == "interval" else None,
        sync_enabled=schedule.enabled if schedule else False,
        next_run_at=schedule.next_run_at if schedule else None,
        schedule_kind=rule_of(schedule).kind if schedule else None,
        paused_by_operator=view.paused_by_operator,
        last_attempt_at=account.last_attempt_at,
        last_success_at=account.last_success_at,
        consecutive_failures=account.consecutive_failures,
        needs_reauth=account.needs_reauth,
        last_error=account.last_error,
        positions_as_of=account.positions_as_of,
        has_credentials=view.has_credentials,
        held_snapshot=None
        if held is None
        else HeldSnapshotOut(
            id=held.id, taken_at=held.taken_at, reason=account.held_reason, holdings_count=held.holdings_count
        ),
    )


@router.post(
    "/portfolios/{portfolio_id}/accounts",
    status_code=status.HTTP_201_CREATED,
    summary="Add a broker account",
    responses=error_responses(401, 404, 409),
)
async def create_account(
    body: AccountCreate,
    portfolio: OwnedPortfolio,
    session: Session,
    settings: ApiSettings,
    known: BrokerTypes,
    cipher: Cipher,
) -> AccountOut:
    """Add a broker account to the portfolio, with a schedule whose first sync is due now.

    Syncs need credentials for most brokers: send them here as `credentials` (then the first sync
    has them), or set them later with `PUT /v1/accounts/{id}/credentials`.
    An account of broker `csv` has no schedule: it holds what its uploaded statements say
    (`POST /v1/accounts/{id}/statements`). `GET /v1/brokers` lists the codes `broker` may be.
    A user holds at most MAX_ACCOUNTS_PER_USER accounts: one more is a 409.
    """
    if body.broker not in known:
        raise _invalid(
            "broker",
            "unknown_broker",
            f"unknown broker {body.broker!r}; this deployment knows: {', '.join(known)}",
        )
    plaintext = body.plaintext_credentials()
    ciphertext = _encrypted(known[body.broker], plaintext, cipher) if plaintext is not None else None
    interval = body.sync_interval_seconds
    if interval is None and body.broker != STATEMENT_BROKER:
        interval = settings.default_sync_interval_seconds
    view = await storage.create_account(
        session,
        owner_id=portfolio.user_id,
        portfolio_id=portfolio.id,
        broker=body.broker,
        label=body.label,
        sync_interval_seconds=interval,
        now=utc_now(),
        max_accounts=settings.max_accounts_per_user,
        credentials_ciphertext=ciphertext,
    )
    log.info("account created", extra={"account_id": str(view.account.id), "broker": body.broker})
    return _account_out(view)


@router.get(
    "/portfolios/{portfolio_id}/accounts",
    summary="List a portfolio's accounts",
    responses=error_responses(400, 401, 404),
)
async def list_accounts(
    portfolio: OwnedPortfolio, session: Session, page: Annotated[paging.PageRequest, paging.page_request(100)]
) -> AccountPage:
    """The portfolio's accounts, oldest first, one page at a time: follow `next_cursor`."""
    views = await storage.account_views(
        session, portfolio_id=portfolio.id, after=page.after(LIST), limit=page.limit + 1
    )
    items, next_cursor = paging.page_of(LIST, views, page.limit, position=_position, item=_account_out)
    return AccountPage(items=items, next_cursor=next_cursor)


def _position(view: storage.AccountView) -> paging.Position:
    return paging.Position(at=view.account.created_at, id=view.account.id)


@router.get(
    "/accounts/{account_id}",
    summary="Get an account and its sync status",
    responses=error_responses(401, 404),
)
async def read_account(account: OwnedAccount, session: Session) -> AccountOut:
    """The account, its sync status, and the snapshot it holds for review (`held_snapshot`), if any."""
    (view,) = await storage.account_views(session, account_id=account.id)
    return _account_out(view)


@router.patch(
    "/accounts/{account_id}",
    summary="Relabel an account",
    responses=error_responses(401, 404),
)
async def update_account(body: AccountUpdate, account: OwnedAccount, session: Session) -> AccountOut:
    """Change what the body names; a field left out keeps its value."""
    await storage_edits.update_account(session, account, label=body.label)
    (view,) = await storage.account_views(session, account_id=account.id)
    return _account_out(view)


@router.put(
    "/accounts/{account_id}/credentials",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set the account's broker credentials",
    responses=error_responses(401, 404),
)
async def put_credentials(
    body: CredentialsIn, account: OwnedAccount, session: Session, cipher: Cipher, known: BrokerTypes
) -> Response:
    """Store the credentials encrypted, replacing any previous ones. Write-only: no route returns them.

    Every field `GET /v1/brokers` lists as required for the account's broker must be set (422
    otherwise, naming the missing fields). New credentials clear `needs_reauth`, so syncs resume.
    """
    # None: a code no longer installed, nothing to check
    ciphertext = _encrypted(known.get(account.broker), body.plaintext(), cipher)
    await storage.store_credentials(session, account_id=account.id, ciphertext=ciphertext, now=utc_now())
    log.info("credentials replaced", extra={"account_id": str(account.id)})
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _encrypted(broker_type: BrokerType | None, plaintext: dict[str, str], cipher: CredentialCipher) -> str:
    """The credentials encrypted, once they hold every field the broker requires (else a 422)."""
    missing = broker_type.missing_credentials(plaintext) if broker_type is not None else []
    if broker_type is not None and missing:
        # Field names only: a value, even a wrong one, may be a secret.
        raise _invalid(
            "credentials",
            "missing_credential",
            f"{broker_type.code} credentials lack {', '.join(missing)} "
            f"(it needs {', '.join(broker_type.credential_fields)})",
        )
    return cipher.encrypt(plaintext)
