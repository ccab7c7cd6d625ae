"""Statement imports through the API: a good file becomes one snapshot on the bus, a bad one nothing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.api import ApiResources, create_app
from services.ledger.handlers import Ledger
from shared import topics
from shared.bus.memory import InMemoryBus
from shared.credentials import CredentialCipher
from shared.db.tables import Schedule, SyncRun
from shared.events import HoldingSnapshot, SnapshotAccepted, decode_event
from shared.settings import Settings
from shared.statements import parse_statement
from tests.unit.api.conftest import Headers, UnreachableBus, sign_up

ROOT = Path(__file__).resolve().parents[3]
GENERIC_EXAMPLE = (ROOT / "docs" / "examples" / "holdings-generic.csv").read_bytes()
ZERODHA_SAMPLE = (ROOT / "tests" / "fakes" / "data" / "csv" / "zerodha-console-holdings.csv").read_bytes()
GENERIC_BAD_ROWS = (ROOT / "tests" / "fakes" / "data" / "csv" / "generic-bad-rows.csv").read_bytes()
CSV = {"Content-Type": "text/csv"}


async def _create_csv_account(
    client: httpx.AsyncClient, headers: Headers, portfolio_id: str
) -> httpx.Response:
    return await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "csv", "label": "Statements"},
        headers=headers,
    )


@pytest.fixture
async def csv_account_id(client: httpx.AsyncClient, alice: Headers, portfolio_id: str) -> str:
    """An account of alice's fed by statements (broker `csv`)."""
    response = await _create_csv_account(client, alice, portfolio_id)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _upload(
    client: httpx.AsyncClient, account_id: str, body: bytes, headers: Headers, content_type: str = "text/csv"
) -> httpx.Response:
    return await client.post(
        f"/v1/accounts/{account_id}/statements",
        content=body,
        headers={**headers, "Content-Type": content_type},
    )


async def _runs(sessions: async_sessionmaker[AsyncSession]) -> Sequence[SyncRun]:
    async with sessions() as session:
        return (await session.scalars(select(SyncRun))).all()


# --- accounts fed by statements ------------------------------------------------------------------


async def test_a_csv_account_has_no_schedule(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await _create_csv_account(client, alice, portfolio_id)

    assert response.status_code == 201
    body = response.json()
    assert body["broker"] == "csv"
    assert (body["sync_interval_seconds"], body["sync_enabled"], body["next_run_at"]) == (None, False, None)
    async with sessions() as session:
        assert await session.get(Schedule, uuid.UUID(body["id"])) is None
    listed = await client.get(f"/v1/portfolios/{portfolio_id}/accounts", headers=alice)
    assert [(a["id"], a["sync_enabled"]) for a in listed.json()["items"]] == [(body["id"], False)]


async def test_a_csv_account_with_a_sync_interval_is_422(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "csv", "label": "Statements", "sync_interval_seconds": 900},
        headers=alice,
    )

    assert response.status_code == 422
    assert "leave out sync_interval_seconds" in response.json()["detail"][0]["msg"]
    async with sessions() as session:
        assert (await session.scalars(select(Schedule))).all() == []


async def test_sync_now_on_a_csv_account_is_409_and_points_to_the_statement_upload(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    response = await client.post(f"/v1/accounts/{csv_account_id}/sync", headers=alice)

    assert response.status_code == 409
    assert f"POST /v1/accounts/{csv_account_id}/statements" in response.json()["detail"]
    assert bus.records(topics.sync_requests("csv")) == []
    assert await _runs(sessions) == []


# --- accepted statements -------------------------------------------------------------------------


async def test_a_generic_statement_becomes_one_snapshot_and_a_requested_run(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before = datetime.now(UTC)

    response = await _upload(client, csv_account_id, GENERIC_EXAMPLE, alice)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {
        "request_id": body["request_id"],
        "snapshot_id": body["snapshot_id"],
        "holdings": 5,
        "format": "generic",
        "statement_date": None,
        "held_for_review": False,
        "review": None,
    }
    (record,) = bus.records(topics.HOLDINGS_SNAPSHOTS)
    assert record.key == csv_account_id
    snapshot = decode_event(HoldingSnapshot, record.value)
    assert (str(snapshot.request_id), str(snapshot.event_id)) == (body["request_id"], body["snapshot_id"])
    assert str(snapshot.account_id) == csv_account_id
    assert snapshot.broker == "csv"
    assert snapshot.holdings == parse_statement(GENERIC_EXAMPLE).holdings
    assert before <= snapshot.taken_at <= datetime.now(UTC)
    (run,) = await _runs(sessions)
    assert (run.id, run.account_id) == (snapshot.request_id, uuid.UUID(csv_account_id))
    assert (run.trigger, run.status, run.finished_at) == ("import", "requested", None)
    assert run.requested_at == snapshot.taken_at


async def test_a_zerodha_console_statement_reports_its_format_and_date(
    client: httpx.AsyncClient, alice: Headers, csv_account_id: str, bus: InMemoryBus
) -> None:
    response = await _upload(client, csv_account_id, ZERODHA_SAMPLE, alice, "text/csv; charset=utf-8")

    assert response.status_code == 202, response.text
    assert response.json()["format"] == "zerodha_console"
    assert response.json()["holdings"] == 6
    assert date.fromisoformat(response.json()["statement_date"]) == date(2026, 7, 29)
    (record,) = bus.records(topics.HOLDINGS_SNAPSHOTS)
    holdings = decode_event(HoldingSnapshot, record.value).holdings
    assert {(h.symbol, h.exchange, h.currency) for h in holdings} >= {
        ("INFY", "NSE", "INR"),
        ("M&M", "NSE", "INR"),
    }


async def test_the_ledger_applies_an_import_like_a_sync(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    response = await _upload(client, csv_account_id, GENERIC_EXAMPLE, alice)
    (record,) = bus.records(topics.HOLDINGS_SNAPSHOTS)

    await Ledger(sessions=sessions, bus=bus).apply_batch([decode_event(HoldingSnapshot, record.value)])

    holdings = (await client.get(f"/v1/accounts/{csv_account_id}/holdings", headers=alice)).json()
    assert [(h["symbol"], h["quantity"], h["average_price"]) for h in holdings] == [
        ("AAPL", "12", "145.3"),
        ("BTC", "0.01234567", "41250"),
        ("INFY", "10", "1450.5"),
        ("PPFAS-FLEXI-CAP-DIRECT-GROWTH", "250.512", "55.2"),
        ("VWCE", "40.5", "98.12"),
    ]
    runs = (await client.get(f"/v1/accounts/{csv_account_id}/sync-runs", headers=alice)).json()["items"]
    assert [(r["id"], r["trigger"], r["status"], r["snapshot_status"]) for r in runs] == [
        (response.json()["request_id"], "import", "succeeded", "applied")
    ]


# --- a statement that leaves out what the account held --------------------------------------------

FIVE = b"symbol,exchange,quantity,average_price,currency\n" + b"".join(
    f"S{i},NSE,{i + 1},10,INR\n".encode() for i in range(5)
)
ONE_OF_FIVE = b"symbol,exchange,quantity,average_price,currency\nS0,NSE,1,10,INR\n"
THREE_OF_FIVE = b"symbol,exchange,quantity,average_price,currency\n" + b"".join(
    f"S{i},NSE,{i + 1},10,INR\n".encode() for i in range(3)
)
EMPTY = b"symbol,exchange,quantity,average_price,currency\n"


async def _upload_and_apply(
    client: httpx.AsyncClient,
    account_id: str,
    body: bytes,
    headers: Headers,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> dict[str, object]:
    response = await _upload(client, account_id, body, headers)
    assert response.status_code == 202, response.text
    record = bus.records(topics.HOLDINGS_SNAPSHOTS)[-1]
    await Ledger(sessions=sessions, bus=bus).apply_batch([decode_event(HoldingSnapshot, record.value)])
    answer: dict[str, object] = response.json()
    return answer


@pytest.mark.parametrize(
    ("second", "held_reason"),
    [
        (ONE_OF_FIVE, "the statement lists 1 of the 5 instruments held before"),
        (EMPTY, "the statement lists no holdings where the account held 5 instrument(s)"),
    ],
)
async def test_a_statement_leaving_out_most_holdings_says_at_once_it_will_be_held_and_how_to_accept(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
    second: bytes,
    held_reason: str,
) -> None:
    first = await _upload_and_apply(client, csv_account_id, FIVE, alice, bus, sessions)
    assert (first["held_for_review"], first["review"]) == (False, None), "a first statement is applied"

    answer = await _upload_and_apply(client, csv_account_id, second, alice, bus, sessions)

    assert answer["held_for_review"] is True
    review = str(answer["review"])
    assert review.startswith(held_reason) and "held for review" in review
    assert f"/v1/accounts/{csv_account_id}/held-snapshot/accept" in review
    assert str(answer["snapshot_id"]) in review
    account = (await client.get(f"/v1/accounts/{csv_account_id}", headers=alice)).json()
    assert account["held_snapshot"]["id"] == answer["snapshot_id"], "the prediction came true"
    assert account["held_snapshot"]["reason"] == held_reason, "the statement, not the broker"
    runs = (await client.get(f"/v1/accounts/{csv_account_id}/sync-runs", headers=alice)).json()["items"]
    assert [(r["status"], r["snapshot_status"]) for r in runs] == [
        ("succeeded", "held"),
        ("succeeded", "applied"),
    ]

    accepted = await client.post(
        f"/v1/accounts/{csv_account_id}/held-snapshot/accept",
        json={"snapshot_id": answer["snapshot_id"]},
        headers=alice,
    )
    assert accepted.status_code == 202, accepted.text
    await Ledger(sessions=sessions, bus=bus).apply_batch(
        [decode_event(SnapshotAccepted, bus.records(topics.SNAPSHOT_REVIEWS)[-1].value)]
    )
    runs = (await client.get(f"/v1/accounts/{csv_account_id}/sync-runs", headers=alice)).json()["items"]
    assert runs[0]["snapshot_status"] == "applied"


async def test_uploading_the_same_short_statement_again_confirms_it_and_is_not_announced_as_held(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _upload_and_apply(client, csv_account_id, FIVE, alice, bus, sessions)
    held = await _upload_and_apply(client, csv_account_id, ONE_OF_FIVE, alice, bus, sessions)
    assert held["held_for_review"] is True

    again = await _upload_and_apply(client, csv_account_id, ONE_OF_FIVE, alice, bus, sessions)

    assert (again["held_for_review"], again["review"]) == (False, None)
    holdings = (await client.get(f"/v1/accounts/{csv_account_id}/holdings", headers=alice)).json()
    assert [h["symbol"] for h in holdings] == ["S0"]


async def test_a_statement_keeping_half_or_more_is_applied_without_review(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await _upload_and_apply(client, csv_account_id, FIVE, alice, bus, sessions)
    answer = await _upload_and_apply(client, csv_account_id, THREE_OF_FIVE, alice, bus, sessions)
    assert answer["held_for_review"] is False
    account = (await client.get(f"/v1/accounts/{csv_account_id}", headers=alice)).json()
    assert account["held_snapshot"] is None


# --- refused statements: nothing recorded, nothing published -------------------------------------


async def test_a_bad_statement_is_422_with_every_problem_and_nothing_is_written_or_published(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    response = await _upload(client, csv_account_id, GENERIC_BAD_ROWS, alice)

    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "statement rejected: 17 problem(s)"
    assert body["problems"][:2] == [
        {"line": 3, "message": "quantity 'abc' is not a number"},
        {"line": 4, "message": "missing symbol"},
    ]
    assert [p["line"] for p in body["problems"]] == [
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        14,
        15,
        15,
        16,
        17,
        17,
        17,
    ]
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []
    assert await _runs(sessions) == []


async def test_an_empty_body_is_422(client: httpx.AsyncClient, alice: Headers, csv_account_id: str) -> None:
    response = await _upload(client, csv_account_id, b"", alice)

    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"line": 1, "message": "the file is empty: expected a header row, then one row per holding"}
    ]


async def test_a_body_over_5_mb_is_413(
    client: httpx.AsyncClient, alice: Headers, csv_account_id: str, bus: InMemoryBus
) -> None:
    response = await _upload(
        client, csv_account_id, b"symbol,quantity,average_price,currency\n" * 140_000, alice
    )

    assert response.status_code == 413
    assert response.json() == {"detail": "the request body is larger than this route takes (5242880 bytes)"}
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []


async def test_more_holdings_than_one_message_can_carry_is_422_and_nothing_is_written(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    rows = "".join(f"SYMBOL{i},1,1,USD\n" for i in range(10_000))

    response = await _upload(
        client, csv_account_id, f"symbol,quantity,average_price,currency\n{rows}".encode(), alice
    )

    assert response.status_code == 422
    (problem,) = response.json()["problems"]
    assert problem["line"] == 0
    assert problem["message"].startswith("the statement's 10000 holdings make a message of ")
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []
    assert await _runs(sessions) == []


async def test_at_most_1000_problems_are_listed(
    client: httpx.AsyncClient, alice: Headers, csv_account_id: str
) -> None:
    body = b"symbol,quantity,average_price,currency\n" + b"X,abc,1,USD\n" * 1500

    response = await _upload(client, csv_account_id, body, alice)

    assert response.status_code == 422
    assert response.json()["detail"] == "statement rejected: 1500 problem(s), the first 1000 listed"
    problems = response.json()["problems"]
    assert len(problems) == 1000
    assert (problems[0]["line"], problems[-1]["line"]) == (2, 1001)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "multipart/form-data; boundary=x", "text/plain", "text/csv; charset=latin-1"],
)
async def test_a_body_that_is_not_utf8_csv_is_415(
    client: httpx.AsyncClient,
    alice: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
    content_type: str,
) -> None:
    response = await _upload(client, csv_account_id, GENERIC_EXAMPLE, alice, content_type)

    assert response.status_code == 415
    assert response.json()["detail"]
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []
    assert await _runs(sessions) == []


async def test_an_account_that_syncs_from_a_broker_refuses_statements(
    client: httpx.AsyncClient,
    alice: Headers,
    account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    response = await _upload(client, account_id, GENERIC_EXAMPLE, alice)

    assert response.status_code == 409
    assert "syncs from broker 'sim'" in response.json()["detail"]
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []
    assert await _runs(sessions) == []


async def test_another_users_account_is_404_and_untouched(
    client: httpx.AsyncClient,
    bob: Headers,
    csv_account_id: str,
    bus: InMemoryBus,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    response = await _upload(client, csv_account_id, GENERIC_EXAMPLE, bob)
    unknown = await _upload(client, str(uuid.uuid4()), GENERIC_EXAMPLE, bob)

    assert (response.status_code, unknown.status_code) == (404, 404)
    assert response.json() == unknown.json() == {"detail": "account not found"}
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []
    assert await _runs(sessions) == []


async def test_without_a_token_it_is_401(
    client: httpx.AsyncClient, csv_account_id: str, bus: InMemoryBus
) -> None:
    response = await _upload(client, csv_account_id, GENERIC_EXAMPLE, {})

    assert response.status_code == 401
    assert bus.records(topics.HOLDINGS_SNAPSHOTS) == []


async def test_an_import_the_bus_refuses_is_503_and_its_run_is_closed_as_failed(
    settings: Settings,
    engine: AsyncEngine,
    cipher: CredentialCipher,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    app = create_app(settings, resources=ApiResources(engine=engine, bus=UnreachableBus(), cipher=cipher))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as client:
        headers = await sign_up(client)
        portfolio = (await client.post("/v1/portfolios", json={"name": "P"}, headers=headers)).json()["id"]
        account = (await _create_csv_account(client, headers, portfolio)).json()["id"]

        response = await _upload(client, account, GENERIC_EXAMPLE, headers)

    assert response.status_code == 503
    assert "upload it again" in response.json()["detail"]
    (run,) = await _runs(sessions)
    assert (run.trigger, run.status, run.failure_kind) == ("import", "failed", "transient")
    assert run.failure_reason == "the imported statement could not be published to the message bus"
    assert run.finished_at is not None
