"""Webhooks end to end in one process: endpoints registered through the API, events handed to the
delivery service's recorder, deliveries sent by its loop (on a clock the test moves) to a real HTTP
receiver on 127.0.0.1, and each signature checked by the `standardwebhooks` package (the scheme's
reference implementation, not our signer)."""

from __future__ import annotations

import base64
import ipaddress
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.webhooks.handlers import DeliveryLoop, WebhookRecorder
from services.webhooks.sending import WebhookSender
from shared.events import FailureKind, HoldingsChanged, PositionChange, SyncFailed, utc_now
from tests.support.webhook_receiver import Answer, Received, Receiver, webhook_receiver
from tests.unit.api.conftest import Headers

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
SCHEDULE = (5.0, 60.0, 600.0)
GIVEN_UP = "portfolio_sync_webhook_deliveries_given_up_total"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture
async def sender() -> AsyncIterator[WebhookSender]:
    async with WebhookSender(allowed_networks=LOOPBACK, timeout_s=2.0) as opened:
        yield opened


@pytest.fixture
def recorder(sessions: async_sessionmaker[AsyncSession]) -> WebhookRecorder:
    return WebhookRecorder(sessions=sessions)


@pytest.fixture
def loop(sessions: async_sessionmaker[AsyncSession], sender: WebhookSender) -> DeliveryLoop:
    return DeliveryLoop(sessions=sessions, sender=sender, retry_schedule=SCHEDULE, disable_after_failures=4)


async def register(
    client: httpx.AsyncClient, headers: Headers, portfolio_id: str, url: str, **extra: object
) -> dict[str, object]:
    response = await client.post(
        f"/v1/portfolios/{portfolio_id}/webhooks", json={"url": url, **extra}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def changed(account_id: str, portfolio_id: str) -> HoldingsChanged:
    return HoldingsChanged(
        account_id=uuid.UUID(account_id),
        portfolio_id=uuid.UUID(portfolio_id),
        snapshot_id=uuid.uuid4(),
        taken_at=utc_now(),
        changes=(
            PositionChange(symbol="TCS", exchange="NSE", previous_quantity=Decimal(1), quantity=Decimal(3)),
        ),
    )


def failed(account_id: str, kind: FailureKind, *, final: bool = True) -> SyncFailed:
    return SyncFailed(
        account_id=uuid.UUID(account_id),
        request_id=uuid.uuid4(),
        broker="sim",
        kind=kind,
        reason="no",
        final=final,
    )


def verified(secret: str, request: Received) -> dict[str, object]:
    payload: dict[str, object] = Webhook(secret).verify(request.body, request.headers)
    return payload


async def test_an_endpoint_gets_each_kind_of_event_signed_so_that_the_reference_implementation_verifies_it(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    loop: DeliveryLoop,
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url + "/hooks")
    secret = str(endpoint["secret"])
    assert secret.startswith("whsec_") and 24 <= len(base64.b64decode(secret[6:])) <= 64
    events = [
        changed(account_id, portfolio_id),
        failed(account_id, FailureKind.AUTH),
        failed(account_id, FailureKind.TRANSIENT),
        failed(account_id, FailureKind.TRANSIENT, final=False),  # retried by the fetcher: no webhook
    ]
    outcomes = await recorder.handle(events)
    assert outcomes == {"queued": 3, "no_webhook": 1}

    assert await loop.send_due(utc_now()) == 3
    assert await loop.send_due(utc_now()) == 0, "a delivered webhook is not sent again"
    payloads = {str(p["type"]): p for p in (verified(secret, r) for r in receiver.received)}
    assert set(payloads) == {"holdings.changed", "account.needs_reauth", "sync.failed"}
    data = payloads["holdings.changed"]["data"]
    assert isinstance(data, dict)
    assert data["changes"] == [
        {"symbol": "TCS", "exchange": "NSE", "previous_quantity": "1", "quantity": "3"}
    ]
    reauth = payloads["account.needs_reauth"]["data"]
    assert isinstance(reauth, dict)
    assert (reauth["account_id"], reauth["portfolio_id"], reauth["kind"]) == (
        account_id,
        portfolio_id,
        "auth",
    )
    by_type = {json.loads(r.body)["type"]: r for r in receiver.received}
    assert by_type["holdings.changed"].headers["webhook-id"] == f"msg_{events[0].event_id.hex}"
    assert by_type["holdings.changed"].path == "/hooks"
    with pytest.raises(WebhookVerificationError):
        Webhook(base64.b64encode(b"x" * 32).decode()).verify(
            by_type["sync.failed"].body, by_type["sync.failed"].headers
        )


async def test_an_event_delivered_twice_by_kafka_is_sent_once_and_only_to_subscribed_endpoints(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    loop: DeliveryLoop,
) -> None:
    await register(client, alice, portfolio_id, receiver.url + "/changes", event_types=["holdings.changed"])
    await register(client, alice, portfolio_id, receiver.url + "/failures", event_types=["sync.failed"])
    event = changed(account_id, portfolio_id)
    await recorder.handle([event])
    await recorder.handle([event])
    assert await loop.send_due(utc_now()) == 1
    assert [r.path for r in receiver.received] == ["/changes"]


async def test_a_failing_delivery_is_retried_on_the_schedule_until_it_succeeds(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    loop: DeliveryLoop,
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    receiver.answer_with(500, 503, 200)
    await recorder.handle([changed(account_id, portfolio_id)])
    start = utc_now()

    assert await loop.send_due(start) == 1
    assert await loop.send_due(start + timedelta(seconds=4)) == 0, "not before the first wait (5 s)"
    assert await loop.send_due(start + timedelta(seconds=5)) == 1
    assert await loop.send_due(start + timedelta(seconds=5 + 59)) == 0, "the second wait is 60 s"
    log = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=alice)).json()["items"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("pending", 2, 503)]
    assert datetime.fromisoformat(log[0]["next_attempt_at"]) == start + timedelta(seconds=65)
    assert await loop.send_due(start + timedelta(seconds=65)) == 1

    log = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=alice)).json()["items"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("delivered", 3, 200)]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1, "one webhook-id on every attempt"
    state = (await client.get(f"/v1/webhooks/{endpoint['id']}", headers=alice)).json()
    assert (state["state"], state["consecutive_failures"]) == ("active", 0)


async def test_an_endpoint_that_keeps_failing_is_disabled_with_the_reason_and_resumes_when_enabled(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    sessions: async_sessionmaker[AsyncSession],
    sender: WebhookSender,
) -> None:
    # Retried at once, on the real clock: the owner enables it again after it was disabled.
    loop = DeliveryLoop(sessions=sessions, sender=sender, retry_schedule=(0.0,) * 9, disable_after_failures=4)
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    path = f"/v1/webhooks/{endpoint['id']}"
    receiver.answer_with(500)
    await recorder.handle([changed(account_id, portfolio_id), changed(account_id, portfolio_id)])
    assert await loop.send_due(utc_now()) == 2
    assert await loop.send_due(utc_now()) == 2  # the 4th failure in a row: disabled
    state = (await client.get(path, headers=alice)).json()
    assert state["state"] == "disabled"
    assert "4 failed attempts in a row" in state["disabled_reason"]
    assert "answered 500" in state["disabled_reason"]
    assert await loop.send_due(utc_now()) == 0, "nothing is sent to a disabled endpoint"
    assert len(receiver.received) == 4

    receiver.answer_with(200)
    response = await client.patch(path, json={"enabled": True}, headers=alice)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "active"
    assert await loop.send_due(utc_now()) == 2, "what was pending goes out"
    state = (await client.get(path, headers=alice)).json()
    assert (state["state"], state["consecutive_failures"], state["disabled_reason"]) == ("active", 0, None)


async def test_a_delivery_is_given_up_after_the_last_retry(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    sessions: async_sessionmaker[AsyncSession],
    sender: WebhookSender,
) -> None:
    loop = DeliveryLoop(sessions=sessions, sender=sender, retry_schedule=SCHEDULE, disable_after_failures=100)
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    receiver.answer_with(500)
    await recorder.handle([changed(account_id, portfolio_id)])
    given_up = REGISTRY.get_sample_value(GIVEN_UP) or 0.0
    now = utc_now()
    for wait in (0.0, *SCHEDULE):
        now += timedelta(seconds=wait)
        assert await loop.send_due(now) == 1
    assert await loop.send_due(now + timedelta(days=30)) == 0
    assert REGISTRY.get_sample_value(GIVEN_UP) == given_up + 1
    log = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=alice)).json()["items"]
    assert [(d["status"], d["attempts"], d["next_attempt_at"]) for d in log] == [("failed", 4, None)]


async def test_a_redirect_is_not_followed(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    loop: DeliveryLoop,
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url + "/first")
    receiver.answer_with(Answer(307, headers={"location": receiver.url + "/elsewhere"}))
    await recorder.handle([changed(account_id, portfolio_id)])
    await loop.send_due(utc_now())
    assert [r.path for r in receiver.received] == ["/first"]
    log = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=alice)).json()["items"]
    assert log[0]["status"] == "pending" and log[0]["last_status_code"] == 307
    assert "not followed" in log[0]["last_error"]


async def test_a_private_address_is_refused_unless_its_network_is_allowed(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url.replace("127.0.0.1", "localhost"))
    await recorder.handle([changed(account_id, portfolio_id)])
    async with WebhookSender(allowed_networks=[], timeout_s=2.0) as strict:
        loop = DeliveryLoop(
            sessions=sessions, sender=strict, retry_schedule=SCHEDULE, disable_after_failures=9
        )
        assert await loop.send_due(utc_now()) == 1
    assert receiver.received == []
    log = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=alice)).json()["items"]
    assert "a loopback address" in log[0]["last_error"], log[0]["last_error"]
    assert log[0]["last_status_code"] is None


async def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    receiver.answer_with(Answer(200, hold_s=30))
    await recorder.handle([changed(account_id, portfolio_id)])
    async with WebhookSender(allowed_networks=LOOPBACK, timeout_s=0.3) as impatient:
        loop = DeliveryLoop(
            sessions=sessions, sender=impatient, retry_schedule=SCHEDULE, disable_after_failures=9
        )
        await loop.send_due(utc_now())
    log = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=alice)).json()["items"]
    assert log[0]["status"] == "pending" and "timed out" in log[0]["last_error"], log[0]["last_error"]


async def test_after_a_rotation_deliveries_carry_both_signatures_until_the_grace_period_ends(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    loop: DeliveryLoop,
    responses: list[str],
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    old = str(endpoint["secret"])
    response = await client.post(
        f"/v1/webhooks/{endpoint['id']}/secret/rotate", json={"grace_seconds": 3600}, headers=alice
    )
    assert response.status_code == 200, response.text
    new = response.json()["secret"]
    assert new != old and response.json()["previous_secret_valid_until"] is not None
    await recorder.handle([changed(account_id, portfolio_id)])
    await loop.send_due(utc_now())
    during = receiver.received[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verified(old, during)
    verified(new, during)

    await recorder.handle([changed(account_id, portfolio_id)])
    await loop.send_due(utc_now() + timedelta(hours=1, seconds=1))
    after = receiver.received[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    # Signed an hour ahead (the test's clock): the reference checks the signature, not the age, here.
    assert (
        Webhook(new).sign(
            after.headers["webhook-id"],
            datetime.fromtimestamp(int(after.headers["webhook-timestamp"])),
            after.body.decode(),
        )
        == after.headers["webhook-signature"]
    )

    listed = (await client.get(f"/v1/portfolios/{portfolio_id}/webhooks", headers=alice)).json()
    assert [e["id"] for e in listed["items"]] == [endpoint["id"]]
    shown = [r for r in responses if old in r or new in r]
    assert len(shown) == 2, "each secret is shown once: at creation and at rotation"


async def test_the_delivery_log_pages_and_a_replay_sends_again_with_the_same_webhook_id(
    client: httpx.AsyncClient,
    alice: Headers,
    portfolio_id: str,
    account_id: str,
    receiver: Receiver,
    recorder: WebhookRecorder,
    loop: DeliveryLoop,
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    path = f"/v1/webhooks/{endpoint['id']}"
    await recorder.handle([changed(account_id, portfolio_id) for _ in range(3)])
    await loop.send_due(utc_now())
    first = (await client.get(path + "/deliveries", params={"limit": 2}, headers=alice)).json()
    rest = (
        await client.get(
            path + "/deliveries", params={"limit": 2, "cursor": first["next_cursor"]}, headers=alice
        )
    ).json()
    log = first["items"] + rest["items"]
    assert len(log) == 3 and rest["next_cursor"] is None
    assert {d["status"] for d in log} == {"delivered"}

    one = log[0]
    response = await client.post(path + "/replays", json={"delivery_id": one["id"]}, headers=alice)
    assert response.status_code == 202, response.text
    assert await loop.carry_out_replays(utc_now()) == 1
    assert await loop.carry_out_replays(utc_now()) == 0, "a replay is carried out once"
    await loop.send_due(utc_now())
    assert receiver.received[-1].headers["webhook-id"] == one["message_id"]
    assert json.loads(receiver.received[-1].body) == one["payload"]

    since = (
        await client.post(path + "/replays", json={"since": "2000-01-01T00:00:00Z"}, headers=alice)
    ).json()
    await loop.carry_out_replays(utc_now())
    await loop.send_due(utc_now())
    assert len(receiver.received) == 3 + 1 + 3, "since T: every original delivery, not the replays"
    log = (await client.get(path + "/deliveries", headers=alice)).json()["items"]
    assert sum(d["replay_id"] == since["id"] for d in log) == 3


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/hook", "https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https:///hook", "no host"),
        ("https://example.com:port/hook", "not a URL"),
    ],
)
async def test_a_url_that_is_not_a_plain_http_one_is_a_422(
    client: httpx.AsyncClient, alice: Headers, portfolio_id: str, url: str, problem: str
) -> None:
    response = await client.post(f"/v1/portfolios/{portfolio_id}/webhooks", json={"url": url}, headers=alice)
    assert response.status_code == 422
    assert problem in response.text


async def test_replay_input_and_other_users_endpoints(
    client: httpx.AsyncClient, alice: Headers, bob: Headers, portfolio_id: str, receiver: Receiver
) -> None:
    endpoint = await register(client, alice, portfolio_id, receiver.url)
    path = f"/v1/webhooks/{endpoint['id']}"
    assert (await client.get(path, headers=bob)).status_code == 404
    assert (await client.post(path + "/replays", json={}, headers=alice)).status_code == 422
    missing = await client.post(path + "/replays", json={"delivery_id": str(uuid.uuid4())}, headers=alice)
    assert missing.status_code == 404
    assert (await client.delete(path, headers=alice)).status_code == 204
    assert (await client.get(path, headers=alice)).status_code == 404
