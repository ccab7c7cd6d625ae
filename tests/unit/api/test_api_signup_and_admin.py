"""Sign-up modes, the answer to a registered address, operators and their routes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api import ApiResources, create_app
from services.user_admin import UserCreationFailed, create_user
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import ApiToken, Invite, User
from shared.events import utc_now
from shared.settings import Settings
from tests.unit.api.conftest import Headers


@pytest.fixture
async def operator(settings: Settings) -> Headers:
    """An operator, made as the first one is: `portfolio-sync users create --operator`."""
    token = await create_user(settings, f"op-{uuid.uuid4().hex[:8]}@example.com", operator=True)
    return {"Authorization": f"Bearer {token}"}


def _mode_client(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, cipher: CredentialCipher, mode: str
) -> httpx.AsyncClient:
    app = create_app(
        settings.model_copy(update={"signup_mode": mode}),
        resources=ApiResources(engine=engine, bus=bus, cipher=cipher),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


@pytest.fixture
async def invite_only(
    settings: Settings, engine: AsyncEngine, bus: InMemoryBus, cipher: CredentialCipher
) -> AsyncIterator[httpx.AsyncClient]:
    async with _mode_client(settings, engine, bus, cipher, "invite") as http:
        yield http


@pytest.mark.asyncio
async def test_closed_sign_up_is_403_and_creates_nothing(
    settings: Settings,
    engine: AsyncEngine,
    bus: InMemoryBus,
    cipher: CredentialCipher,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with _mode_client(settings, engine, bus, cipher, "closed") as closed:
        response = await closed.post("/v1/users", json={"email": "x@example.com"})

    assert response.status_code == 403
    assert "closed" in response.json()["detail"]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.asyncio
async def test_invite_mode_takes_an_operators_code_once(
    client: httpx.AsyncClient, invite_only: httpx.AsyncClient, operator: Headers
) -> None:
    without = await invite_only.post("/v1/users", json={"email": "grace@example.com"})
    assert without.status_code == 403 and "invite_code" in without.json()["detail"]
    invite = await client.post("/v1/admin/invites", json={}, headers=operator)
    assert invite.status_code == 201
    code = invite.json()["code"]

    joined = await invite_only.post("/v1/users", json={"email": "grace@example.com", "invite_code": code})
    again = await invite_only.post("/v1/users", json={"email": "hopper@example.com", "invite_code": code})
    forged = await invite_only.post("/v1/users", json={"email": "hopper@example.com", "invite_code": "nope"})

    assert joined.status_code == 201
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {joined.json()['api_token']}"})
    assert me.json()["email"] == "grace@example.com"
    assert again.status_code == 403 and forged.status_code == 403
    assert again.json() == forged.json()  # a used code and a made-up one are told apart by no one


@pytest.mark.asyncio
async def test_an_invite_for_an_address_serves_only_it_and_only_until_it_expires(
    client: httpx.AsyncClient,
    invite_only: httpx.AsyncClient,
    operator: Headers,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    invite = (
        await client.post("/v1/admin/invites", json={"email": " Ada@Example.com"}, headers=operator)
    ).json()
    assert invite["email"] == "ada@example.com"
    code = invite["code"]

    other = await invite_only.post("/v1/users", json={"email": "eve@example.com", "invite_code": code})
    assert other.status_code == 403
    async with sessions() as session:
        await session.execute(update(Invite).values(expires_at=utc_now() - timedelta(seconds=1)))
        await session.commit()
    expired = await invite_only.post("/v1/users", json={"email": "ada@example.com", "invite_code": code})
    assert expired.status_code == 403
    async with sessions() as session:
        await session.execute(update(Invite).values(expires_at=utc_now() + timedelta(hours=1)))
        await session.commit()
    ok = await invite_only.post("/v1/users", json={"email": "ada@example.com", "invite_code": code})
    assert ok.status_code == 201
    async with sessions() as session:
        stored = await session.scalar(select(Invite))
    assert stored is not None and code not in stored.code_hash and stored.used_at is not None


@pytest.mark.asyncio
async def test_a_registered_address_gets_an_answer_indistinguishable_from_a_new_one(
    client: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]
) -> None:
    first = await client.post("/v1/users", json={"email": "grace@example.com"})
    fresh = await client.post("/v1/users", json={"email": "hopper@example.com"})

    taken = await client.post("/v1/users", json={"email": "Grace@Example.COM"})

    assert taken.status_code == fresh.status_code == 201
    assert set(taken.headers) == set(fresh.headers)
    # Bodies differ only by the address each one echoes.
    assert int(taken.headers["content-length"]) - len("grace") == int(fresh.headers["content-length"]) - len(
        "hopper"
    )
    assert set(taken.json()) == set(fresh.json()) == {"id", "email", "api_token"}
    assert taken.json()["email"] == "grace@example.com"
    assert len(taken.json()["api_token"]) == len(fresh.json()["api_token"])
    # It created nothing: the original user is untouched, and the decoy token works nowhere.
    assert taken.json()["id"] != first.json()["id"]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 2
        assert await session.scalar(select(func.count()).select_from(ApiToken)) == 2
    decoy = {"Authorization": f"Bearer {taken.json()['api_token']}"}
    assert (await client.get("/v1/me", headers=decoy)).status_code == 401
    owner = {"Authorization": f"Bearer {first.json()['api_token']}"}
    assert (await client.get("/v1/me", headers=owner)).status_code == 200


@pytest.mark.asyncio
async def test_every_admin_route_is_403_for_a_user(
    client: httpx.AsyncClient, alice: Headers, operator: Headers
) -> None:
    document = (await client.get("/openapi.json")).json()
    admin = [(path, method) for path, ops in document["paths"].items() if "/admin/" in path for method in ops]
    assert len(admin) >= 2
    for path, method in admin:
        concrete = path.replace("{user_id}", str(uuid.uuid4()))
        response = await client.request(method, concrete, json={"name": "x"}, headers=alice)
        assert response.status_code == 403, (method, path)
        assert "operator" in response.json()["detail"]
        assert "403" in document["paths"][path][method]["responses"]
        anonymous = await client.request(method, concrete, json={"name": "x"})
        assert anonymous.status_code == 401


@pytest.mark.asyncio
async def test_an_operator_issues_a_token_to_a_user_who_lost_theirs(
    client: httpx.AsyncClient, operator: Headers
) -> None:
    signed_up = (await client.post("/v1/users", json={"email": "lost@example.com"})).json()

    issued = await client.post(
        f"/v1/admin/users/{signed_up['id']}/tokens",
        json={"name": "recovered", "scope": "write", "expires_in_seconds": 86400},
        headers=operator,
    )
    unknown = await client.post(
        f"/v1/admin/users/{uuid.uuid4()}/tokens", json={"name": "x"}, headers=operator
    )

    assert issued.status_code == 201
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {issued.json()['token']}"})
    assert me.json()["id"] == signed_up["id"]
    assert unknown.status_code == 404


@pytest.mark.asyncio
async def test_the_cli_refuses_a_registered_or_malformed_address(settings: Settings) -> None:
    await create_user(settings, "op@example.com", operator=True)

    with pytest.raises(UserCreationFailed, match="exists"):
        await create_user(settings, "OP@example.com", operator=True)
    with pytest.raises(UserCreationFailed, match="email"):
        await create_user(settings, "not-an-email", operator=False)
