"""The consumer groups of a deployment, named once for those who watch them (the operator's lag)."""

from __future__ import annotations

LEDGER = "ledger"
WEBHOOKS = "webhooks"


def fetcher(broker: str) -> str:
    return f"fetcher.{broker}"


def fetcher_retries(broker: str) -> str:
    return f"{fetcher(broker)}.retry"


def all_groups(brokers: list[str]) -> list[str]:
    return [LEDGER, WEBHOOKS, *(group for b in brokers for group in (fetcher(b), fetcher_retries(b)))]
