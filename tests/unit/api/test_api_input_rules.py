"""The API's input rules (services/api/input_types.py, body_cap.py): a clear 4xx, never a 500."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import ApiResources, create_app
from services.api.input_types import TEXT_PATTERN
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.settings import Settings
from tests.unit.api.conftest import Headers

BAD_TIMESTAMPS = [
    "0.5",  # pydantic alone would take it as a Unix time
    "1700000000",
    "0001-01-01T00:00:00+01:00",  # overflowed astimezone in the database type: a 500 before
    "9999-12-31T23:59:59-01:00",
    "1899-12-31T23:59:59Z",
    "2026-01-31T15:30:00",  # no zone
    "yesterday",
]


@pytest.mark.parametrize("value", BAD_TIMESTAMPS)
async def test_timestamps_outside_the_rule_are_422_on_every_route(
    client: httpx.AsyncClient, alice: Headers, account_id: str, portfolio_id: str, value: str
) -> None:
    for path, name in [
        (f"/v1/accounts/{account_id}/holdings", "as_of"),
        (f"/v1/portfolios/{portfolio_id}/holdings", "as_of"),
        ("/v1/transactions", "from"),
        ("/v1/transactions", "to"),
    ]:
        response = await client.get(path, params={name: value}, headers=alice)
        assert response.status_code == 422, (path, name, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", name]


@pytest.mark.parametrize("value", BAD_TIMESTAMPS)
async def test_a_token_expiry_outside_the_rule_is_422(
    client: httpx.AsyncClient, alice: Headers, value: str
) -> None:
    response = await client.post("/v1/tokens", json={"name": "t", "expires_at": value}, headers=alice)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", "expires_at"]


async def test_timestamps_at_the_edges_of_the_range_are_taken(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    for value in ["1900-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00", "2026-01-31T15:30:00+05:30"]:
        response = await client.get(
            f"/v1/accounts/{account_id}/holdings", params={"as_of": value}, headers=alice
        )
        assert response.status_code == 200, (value, response.text)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\ud800"])
async def test_control_characters_are_422_wherever_text_comes_in(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, account_id: str, char: str
) -> None:
    bodies = [
        ("POST", "/v1/users", {"email": f"a{char}b@example.com"}),
        ("POST", "/v1/portfolios", {"name": f"Ma{char}in"}),
        ("POST", f"/v1/portfolios/{portfolio_id}/accounts", {"broker": "sim", "label": f"x{char}y"}),
        ("PUT", f"/v1/accounts/{account_id}/credentials", {"credentials": {f"k{char}": "v"}}),
        ("PATCH", f"/v1/portfolios/{portfolio_id}", {"name": f"Ma{char}in"}),
        ("PATCH", f"/v1/accounts/{account_id}", {"label": f"x{char}y"}),
        ("POST", "/v1/tokens", {"name": f"lap{char}top"}),
    ]
    for method, path, body in bodies:
        # json.dumps escapes what httpx could not encode (a lone surrogate), as a client may send it.
        content = json.dumps(body).encode()
        headers = {**alice, "content-type": "application/json"}
        response = await client.request(method, path, content=content, headers=headers)
        assert response.status_code == 422, (path, response.text)
    if char != "\ud800":  # not encodable in a URL
        response = await client.get("/v1/transactions", params={"symbol": f"AA{char}PL"}, headers=alice)
        assert response.status_code == 422, response.text


async def test_the_rule_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    name = document["components"]["schemas"]["PortfolioCreate"]["properties"]["name"]
    assert name["pattern"] == TEXT_PATTERN


async def test_an_empty_cursor_is_the_first_page(client: httpx.AsyncClient, alice: Headers) -> None:
    response = await client.get("/v1/transactions", params={"cursor": ""}, headers=alice)
    assert response.status_code == 200, response.text


async def test_a_malformed_statement_request_still_lists_problems(
    client: httpx.AsyncClient, alice: Headers
) -> None:
    response = await client.post(
        "/v1/accounts/not-a-uuid/statements", content=b"x", headers={**alice, "content-type": "text/csv"}
    )
    assert response.status_code == 422
    assert response.json()["problems"][0]["line"] == 0
    assert "account_id" in response.json()["problems"][0]["message"]


class _SlowUpload:
    """An ASGI `receive` handing out a large body in chunks, counting what the app pulled."""

    def __init__(self, chunks: int, chunk: bytes) -> None:
        self.left = chunks
        self.chunk = chunk
        self.pulled = 0

    async def __call__(self) -> dict[str, object]:
        self.left -= 1
        self.pulled += 1
        return {"type": "http.request", "body": self.chunk, "more_body": self.left > 0}


async def _call(
    app: object, path: str, receive: _SlowUpload, headers: list[tuple[bytes, bytes]]
) -> list[dict]:  # type: ignore[type-arg]
    sent: list[dict] = []  # type: ignore[type-arg]

    async def send(message: dict) -> None:  # type: ignore[type-arg]
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"api.test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1), "server": ("api.test", 80),
    }  # fmt: skip
    await app(scope, receive, send)  # type: ignore[operator]
    return sent


@pytest.fixture
def capped_app(engine: AsyncEngine, bus: InMemoryBus) -> object:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        bus="memory",
        credentials_keys=SecretStr(CredentialCipher.generate_key()),
        api_max_body_bytes=1_048_576,
    )
    cipher = CredentialCipher(settings.credentials_keys.get_secret_value())
    return create_app(settings, resources=ApiResources(engine=engine, bus=bus, cipher=cipher))


async def test_a_60_mb_body_is_413_after_reading_little_more_than_the_cap(capped_app: object) -> None:
    transport = httpx.ASGITransport(app=capped_app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        token = (await client.post("/v1/users", json={"email": "big@example.test"})).json()["api_token"]
    upload = _SlowUpload(chunks=60, chunk=b" " * 1_048_576)  # 60 MB, sent without a Content-Length

    # Signed in: the token is checked before the body is read, so only the cap can stop this one.
    sent = await _call(
        capped_app, "/v1/portfolios", upload, headers=[(b"authorization", f"Bearer {token}".encode())]
    )

    assert sent[0]["status"] == 413
    assert b"1048576 bytes" in sent[1]["body"]
    assert len(sent) == 2  # the app's own answer to the cut-off body went nowhere
    assert upload.pulled == 2  # 2 MiB read of 60: refused at the first byte over the cap


async def test_a_declared_content_length_over_the_cap_is_413_before_any_byte_is_read(
    capped_app: object,
) -> None:
    upload = _SlowUpload(chunks=60, chunk=b" " * 1_048_576)

    sent = await _call(capped_app, "/v1/portfolios", upload, headers=[(b"content-length", b"62914560")])

    assert sent[0]["status"] == 413
    assert upload.pulled == 0


async def test_the_statement_upload_keeps_its_larger_cap(capped_app: object) -> None:
    upload = _SlowUpload(chunks=3, chunk=b"x" * 1_048_576)  # 3 MiB: over the default, under 5 MB

    declared = [(b"content-length", str(3 * 1_048_576).encode())]
    sent = await _call(capped_app, "/v1/accounts/not-a-uuid/statements", upload, headers=declared)

    assert sent[0]["status"] == 401  # the route ran (no token), rather than a 413 at the door
