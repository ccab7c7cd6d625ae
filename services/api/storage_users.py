"""Users, their named API tokens and operators' invites, on an `AsyncSession` (portable SQL).

Only SHA-256 hashes of token secrets and invite codes are stored; the secrets exist in a response
once. Write functions commit: each one is a whole transaction.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Update, Uuid, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.tables import ApiToken, Invite, Role, TokenScope, User

LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token: a read-mostly API stays read-mostly."""


def secret_hash(secret: str) -> str:
    """What the database keeps of a token secret or an invite code."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A token secret or invite code: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


class EmailTaken(Exception):
    """Sign-up of a registered address; the route must not say so (see docs/identity.md)."""


class InviteRefused(Exception):
    """The invite code is unknown, used, expired, or for another address."""


class TokenNameTaken(Exception):
    """The user already has a token of that name (revoked ones keep theirs)."""


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the user and the token they sent."""

    user: User
    token: ApiToken


@dataclass(frozen=True)
class IssuedToken:
    """A new token and its secret, which is not stored: the only time it can be shown."""

    token: ApiToken
    secret: str


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    now: datetime,
    role: str = Role.USER,
    invite_code: str | None = None,
) -> IssuedToken:
    """The user and their first token (`default`, scope `write`), in one transaction.

    With `invite_code`, the invite is used up in the same transaction: a sign-up that fails
    leaves it usable. Raises InviteRefused before looking at the email, then EmailTaken.
    """
    if invite_code is not None:
        used = await session.execute(
            update(Invite)
            .where(
                Invite.code_hash == secret_hash(invite_code),
                Invite.used_at.is_(None),
                Invite.expires_at > now,
                or_(Invite.email.is_(None), Invite.email == email),
            )
            .values(used_at=now)
        )
        if used.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            raise InviteRefused
    user = User(id=uuid.uuid4(), email=email, role=role, created_at=now)
    session.add(user)
    try:
        await session.flush()  # the user first: without an ORM relationship, no order is implied
    except IntegrityError:
        await session.rollback()
        raise EmailTaken from None
    issued = _new_token(user.id, name="default", scope=TokenScope.WRITE, expires_at=None, now=now)
    session.add(issued.token)
    await session.commit()
    return issued


async def caller_by_token_hash(session: AsyncSession, token_hash: str, *, now: datetime) -> Caller | None:
    """The owner of a live token (neither revoked nor expired), and the token."""
    row = (
        await session.execute(
            select(User, ApiToken)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(
                ApiToken.token_hash == token_hash,
                ApiToken.revoked_at.is_(None),
                or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
            )
        )
    ).first()
    return None if row is None else Caller(user=row[0], token=row[1])


async def note_token_use(session: AsyncSession, token: ApiToken, *, now: datetime) -> None:
    """Set `last_used_at` if it is older than LAST_USED_RESOLUTION; the caller commits.

    Checked first on the row already read, so most requests write nothing; the condition is repeated
    in SQL so that concurrent processes do not move it back.
    """
    if is_use_noted(token.last_used_at, now):
        return
    await session.execute(token_use_update(), token_use_values(token.id, now))


def is_use_noted(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a token last used at `last_used_at` needs no new `last_used_at` at `now`."""
    return last_used_at is not None and now - last_used_at < LAST_USED_RESOLUTION


def token_use_values(token_id: uuid.UUID, now: datetime) -> dict[str, object]:
    return {"token_id": token_id, "now": now, "stale_before": now - LAST_USED_RESOLUTION}


@functools.cache
def token_use_update() -> Update:
    """UPDATE a token's `last_used_at` to `now` unless newer than `stale_before`; built once (the API's
    fast reads run it too: fast_reads.py)."""
    used_at = ApiToken.last_used_at
    return (
        update(ApiToken)
        .where(
            ApiToken.id == bindparam("token_id", type_=Uuid()),
            or_(used_at.is_(None), used_at < bindparam("stale_before", type_=used_at.type)),
        )
        .values(last_used_at=bindparam("now", type_=used_at.type))
    )


async def issue_token(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    name: str,
    scope: str,
    expires_at: datetime | None,
    now: datetime,
) -> IssuedToken:
    issued = _new_token(user_id, name=name, scope=scope, expires_at=expires_at, now=now)
    session.add(issued.token)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise TokenNameTaken(
            f"you already have a token named {name!r} (names of revoked tokens stay taken)"
        ) from None
    return issued


async def user_tokens(session: AsyncSession, user_id: uuid.UUID) -> Sequence[ApiToken]:
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at, ApiToken.id)
    return (await session.scalars(query)).all()


async def revoke_token(
    session: AsyncSession, *, user_id: uuid.UUID, token_id: uuid.UUID, now: datetime
) -> bool:
    """Revoke one of the user's tokens (again is a no-op); False if the user has no such token."""
    token = await session.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id))
    if token is None:
        return False
    if token.revoked_at is None:
        token.revoked_at = now
        await session.commit()
    return True


async def user_by_id(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def create_invite(
    session: AsyncSession, *, created_by: uuid.UUID, email: str | None, expires_at: datetime, now: datetime
) -> tuple[Invite, str]:
    """A new invite and its code (shown once: only its hash is stored)."""
    code = new_secret()
    invite = Invite(
        id=uuid.uuid4(),
        code_hash=secret_hash(code),
        email=email,
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(invite)
    await session.commit()
    return invite, code


def _new_token(
    user_id: uuid.UUID, *, name: str, scope: str, expires_at: datetime | None, now: datetime
) -> IssuedToken:
    secret = new_secret()
    token = ApiToken(
        id=uuid.uuid4(),
        user_id=user_id,
        name=name,
        token_hash=secret_hash(secret),
        scope=scope,
        created_at=now,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, secret=secret)
