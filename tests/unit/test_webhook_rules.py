"""The delivery service's rules that need no receiver: where a webhook may go, which events make
one, and how `holdings.changes` is read (an AccountRemoved is no HoldingsChanged, and no dead letter)."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from services.webhooks.addresses import RefusedAddress, checked_address, refusal
from services.webhooks.payloads import webhook_of
from services.webhooks.sending import MAX_ANSWER_BYTES, WebhookSender
from shared.events import (
    HOLDINGS_CHANGES_EVENTS,
    AccountRemoved,
    EventDecodeError,
    FailureKind,
    HoldingsChanged,
    SyncFailed,
    decode_on_topic,
)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.5", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("100.64.0.1", "reserved"),  # carrier-grade NAT
        ("0.0.0.0", "private"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_non_public_addresses_are_refused_with_what_they_are(address: str, kind: str) -> None:
    assert refusal(ipaddress.ip_address(address), []) == f"a {kind} address"


def test_public_addresses_pass_and_an_allowed_network_lets_a_private_one_through() -> None:
    assert refusal(ipaddress.ip_address("93.184.216.34"), []) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111"), []) is None
    allowed = [ipaddress.ip_network("10.0.0.0/8")]
    assert refusal(ipaddress.ip_address("10.1.2.3"), allowed) is None
    assert refusal(ipaddress.ip_address("192.168.0.1"), allowed) == "a private address"


async def test_a_host_is_refused_if_any_address_it_resolves_to_is_refused() -> None:
    with pytest.raises(RefusedAddress, match="loopback"):
        await checked_address("localhost", 443, [])
    assert await checked_address(
        "localhost", 443, [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    ) in {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    with pytest.raises(RefusedAddress, match="does not resolve"):
        await checked_address("no-such-host.invalid", 443, [])


def _failure(kind: FailureKind, *, final: bool) -> SyncFailed:
    return SyncFailed(
        account_id=uuid.uuid4(), request_id=uuid.uuid4(), broker="sim", kind=kind, reason="r", final=final
    )


def test_which_events_make_which_webhook() -> None:
    kinds = {
        (kind, final): getattr(webhook_of(_failure(kind, final=final)), "event_type", None)
        for kind in (FailureKind.AUTH, FailureKind.RATE_LIMITED)
        for final in (True, False)
    }
    assert kinds == {
        (FailureKind.AUTH, True): "account.needs_reauth",
        (FailureKind.AUTH, False): "account.needs_reauth",  # as the ledger sets needs_reauth on any
        (FailureKind.RATE_LIMITED, True): "sync.failed",
        (FailureKind.RATE_LIMITED, False): None,  # to be retried by the fetcher
    }
    assert webhook_of(AccountRemoved.of(account_id=uuid.uuid4(), portfolio_id=uuid.uuid4())) is None


def test_holdings_changes_decodes_either_event_and_rejects_what_is_neither() -> None:
    removed = AccountRemoved.of(account_id=uuid.uuid4(), portfolio_id=uuid.uuid4())
    changed = HoldingsChanged(
        account_id=uuid.uuid4(),
        portfolio_id=uuid.uuid4(),
        snapshot_id=uuid.uuid4(),
        taken_at=datetime.now(UTC),
        changes=(),
    )
    assert decode_on_topic(HOLDINGS_CHANGES_EVENTS, removed.to_bytes()) == removed
    assert decode_on_topic(HOLDINGS_CHANGES_EVENTS, changed.to_bytes()) == changed
    with pytest.raises(EventDecodeError, match="not a valid HoldingsChanged"):
        decode_on_topic(HOLDINGS_CHANGES_EVENTS, b'{"account_id": "x"}')


async def test_only_the_start_of_a_long_answer_is_read() -> None:
    served = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal served
        for _ in range(1000):  # 64 MB, if it were all read
            served += 65536
            yield b"x" * 65536

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    async with WebhookSender(
        allowed_networks=[ipaddress.ip_network("127.0.0.0/8")], timeout_s=2, transport=transport
    ) as sender:
        outcome = await sender.send("http://127.0.0.1:9/hook", {}, b"{}")
    assert outcome.delivered
    assert served <= MAX_ANSWER_BYTES * 2, served
