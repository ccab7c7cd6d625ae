"""`portfolio-sync users create [--operator] EMAIL`: a user made from the command line, the way the
first operator is made. The token is printed once; only its hash is stored."""

from __future__ import annotations

from services.api import storage_users
from services.api.schemas import normal_email
from shared.db.engine import session_factory
from shared.db.tables import Role
from shared.events import utc_now
from shared.runtime import checked_engine
from shared.settings import Settings


class UserCreationFailed(Exception):
    """The email is malformed or registered; the message says which."""


async def create_user(settings: Settings, email: str, *, operator: bool) -> str:
    """Create the user in DATABASE_URL and return their `default` write token's secret."""
    try:
        address = normal_email(email)
    except ValueError as exc:
        raise UserCreationFailed(str(exc)) from None
    async with checked_engine(settings) as engine, session_factory(engine)() as session:
        try:
            issued = await storage_users.create_user(
                session, email=address, now=utc_now(), role=Role.OPERATOR if operator else Role.USER
            )
        except storage_users.EmailTaken:
            raise UserCreationFailed(f"a user with email {address!r} exists already") from None
    return issued.secret
