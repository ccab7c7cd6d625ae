"""An account's schedule through the API, and operators' broker pauses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.user_admin import create_user
from shared.events import utc_now
from shared.settings import Settings
from tests.unit.api.conftest import Headers


@pytest.fixture
async def operator(settings: Settings) -> Headers:
    token = await create_user(settings, f"op-{uuid.uuid4().hex[:8]}@example.com", operator=True)
    return {"Authorization": f"Bearer {token}"}


def _path(account_id: str) -> str:
    return f"/v1/accounts/{account_id}/schedule"


async def test_a_new_account_has_an_interval_schedule_that_get_shows_with_five_next_runs(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    got = await client.get(_path(account_id), headers=alice)
    assert got.status_code == 200, got.text
    body = got.json()
    assert (body["kind"], body["state"], body["run_count"], body["last_run_at"]) == (
        "interval",
        "active",
        0,
        None,
    )
    runs = [datetime.fromisoformat(r) for r in body["next_runs"]]
    assert len(runs) == 5 and runs[0] == datetime.fromisoformat(body["next_run_at"])
    assert all(b - a == timedelta(seconds=body["interval_seconds"]) for a, b in pairwise(runs[1:]))


async def test_put_a_cron_schedule_in_market_hours_and_the_account_shows_its_kind(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    put = await client.put(
        _path(account_id),
        json={"kind": "cron", "cron": "*/15 9-15 * * 1-5", "timezone": "Asia/Kolkata"},
        headers=alice,
    )
    assert put.status_code == 200, put.text
    body = put.json()
    assert (body["kind"], body["cron"], body["timezone"], body["interval_seconds"]) == (
        "cron",
        "*/15 9-15 * * 1-5",
        "Asia/Kolkata",
        None,
    )
    for fire in body["next_runs"]:
        local = datetime.fromisoformat(fire).astimezone(ZoneInfo("Asia/Kolkata"))
        assert local.weekday() < 5 and 9 <= local.hour <= 15 and local.minute % 15 == 0
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert (account["schedule_kind"], account["sync_interval_seconds"], account["sync_enabled"]) == (
        "cron",
        None,
        True,
    )
    assert account["next_run_at"] == body["next_run_at"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"kind": "cron", "cron": "61 * * * *", "timezone": "UTC"}, "cron", "cron expression"),
        ({"kind": "cron", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"kind": "interval", "interval_seconds": 5}, "interval_seconds", "at most every 60 s"),
        ({"kind": "once"}, "run_at", "Field required"),
        (
            {
                "kind": "interval",
                "interval_seconds": 600,
                "start_at": "2026-06-02T00:00:00Z",
                "end_at": "2026-06-01T00:00:00Z",
            },
            "",
            "end_at must be after start_at",
        ),
    ],
)
async def test_a_schedule_that_cannot_work_is_a_422_that_says_why(
    client: httpx.AsyncClient,
    alice: Headers,
    account_id: str,
    body: dict[str, object],
    field: str,
    words: str,
) -> None:
    put = await client.put(_path(account_id), json=body, headers=alice)
    assert put.status_code == 422, put.text
    [problem] = put.json()["detail"]
    assert words in problem["msg"]
    assert field == "" or problem["loc"][-1] == field


async def test_patch_pauses_resumes_and_changes_only_what_it_names(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    before = (await client.get(_path(account_id), headers=alice)).json()
    paused = (await client.patch(_path(account_id), json={"enabled": False}, headers=alice)).json()
    assert (paused["state"], paused["next_runs"], paused["interval_seconds"]) == (
        "paused",
        [],
        before["interval_seconds"],
    )
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert account["sync_enabled"] is False

    end = (utc_now() + timedelta(days=30)).isoformat()
    resumed = await client.patch(_path(account_id), json={"enabled": True, "end_at": end}, headers=alice)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["state"] == "active"
    assert datetime.fromisoformat(resumed.json()["end_at"]) == datetime.fromisoformat(end)

    switched = await client.patch(
        _path(account_id),
        json={"kind": "cron", "cron": "0 9 * * *", "timezone": "America/New_York"},
        headers=alice,
    )
    assert switched.status_code == 200, switched.text
    assert (switched.json()["kind"], switched.json()["interval_seconds"], switched.json()["end_at"]) == (
        "cron",
        None,
        resumed.json()["end_at"],
    )
    missing = await client.patch(_path(account_id), json={"kind": "once"}, headers=alice)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "run_at"]


async def test_once_in_the_future_previews_one_fire_and_an_end_passed_shows_ended(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    at = (utc_now() + timedelta(days=2)).replace(microsecond=0)
    once = (
        await client.put(_path(account_id), json={"kind": "once", "run_at": at.isoformat()}, headers=alice)
    ).json()
    assert [datetime.fromisoformat(t) for t in once["next_runs"]] == [at]
    ended = await client.put(
        _path(account_id),
        json={
            "kind": "interval",
            "interval_seconds": 600,
            "start_at": "2020-01-01T00:00:00Z",
            "end_at": "2020-02-01T00:00:00Z",
        },
        headers=alice,
    )
    assert (ended.json()["state"], ended.json()["next_run_at"], ended.json()["next_runs"]) == (
        "ended",
        None,
        [],
    )


async def test_delete_leaves_the_account_to_sync_on_demand_and_put_gives_it_back(
    client: httpx.AsyncClient, alice: Headers, account_id: str
) -> None:
    assert (await client.delete(_path(account_id), headers=alice)).status_code == 204
    assert (await client.get(_path(account_id), headers=alice)).status_code == 404
    assert (await client.delete(_path(account_id), headers=alice)).status_code == 404
    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    assert (account["schedule_kind"], account["sync_enabled"], account["next_run_at"]) == (None, False, None)
    assert (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).status_code == 202
    put = await client.put(
        _path(account_id), json={"kind": "interval", "interval_seconds": 900}, headers=alice
    )
    assert put.status_code == 200 and put.json()["interval_seconds"] == 900


async def test_a_statement_account_has_no_schedule(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str
) -> None:
    created = await client.post(
        f"/v1/portfolios/{portfolio_id}/accounts",
        json={"broker": "csv", "label": "Statements"},
        headers=alice,
    )
    csv_id = created.json()["id"]
    for method in ("GET", "DELETE"):
        answer = await client.request(method, _path(csv_id), headers=alice)
        assert answer.status_code == 409 and "uploaded statements" in answer.json()["detail"]
    put = await client.put(_path(csv_id), json={"kind": "interval", "interval_seconds": 600}, headers=alice)
    assert put.status_code == 409


async def test_someone_elses_schedule_is_a_404(
    client: httpx.AsyncClient, bob: Headers, account_id: str
) -> None:
    for method in ("GET", "DELETE"):
        assert (await client.request(method, _path(account_id), headers=bob)).status_code == 404


async def test_an_operator_pauses_a_broker_and_its_accounts_say_why(
    client: httpx.AsyncClient, alice: Headers, operator: Headers, account_id: str
) -> None:
    assert (
        await client.post("/v1/admin/brokers/sim/pause", json={"reason": "x"}, headers=alice)
    ).status_code == 403
    paused = await client.post(
        "/v1/admin/brokers/sim/pause", json={"reason": "simulator outage"}, headers=operator
    )
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"]["reason"] == "simulator outage"
    listed = {b["code"]: b for b in (await client.get("/v1/admin/brokers", headers=operator)).json()}
    assert listed["sim"]["paused"]["reason"] == "simulator outage" and listed["zerodha"]["paused"] is None

    account = (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()
    schedule = (await client.get(_path(account_id), headers=alice)).json()
    assert account["paused_by_operator"] == schedule["paused_by_operator"] == "simulator outage"
    assert schedule["state"] == "paused_by_operator"
    sync = await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)
    assert sync.status_code == 409 and "paused by an operator (simulator outage)" in sync.json()["detail"]

    resumed = await client.post("/v1/admin/brokers/sim/resume", headers=operator)
    assert resumed.status_code == 200 and resumed.json()["paused"] is None
    assert (await client.post(f"/v1/accounts/{account_id}/sync", headers=alice)).status_code == 202
    assert (await client.get(f"/v1/accounts/{account_id}", headers=alice)).json()[
        "paused_by_operator"
    ] is None


async def test_pausing_an_unknown_broker_or_csv_is_refused(
    client: httpx.AsyncClient, operator: Headers
) -> None:
    assert (
        await client.post("/v1/admin/brokers/nope/pause", json={"reason": "x"}, headers=operator)
    ).status_code == 404
    assert (
        await client.post("/v1/admin/brokers/csv/pause", json={"reason": "x"}, headers=operator)
    ).status_code == 409
    assert (
        await client.post("/v1/admin/brokers/sim/pause", json={"reason": "bad\x00"}, headers=operator)
    ).status_code == 422
