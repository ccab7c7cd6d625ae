"""Snapshots as a fetcher would send them, for tests that stream many through the ledger."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from shared.events import AssetType, Holding, HoldingSnapshot, utc_now


def successive_snapshots(account_id: uuid.UUID, *, count: int, holdings: int) -> list[HoldingSnapshot]:
    """`count` successive snapshots of one account, a minute apart, of `holdings` instruments each;
    every one changes one position, so each is announced."""
    start = utc_now() - timedelta(days=1)
    return [
        HoldingSnapshot(
            account_id=account_id,
            request_id=uuid.uuid4(),
            broker="sim",
            taken_at=start + timedelta(minutes=n),
            holdings=tuple(
                Holding(
                    symbol=f"SYM{i:02d}",
                    exchange="NSE",
                    currency="INR",
                    asset_type=AssetType.EQUITY,
                    quantity=Decimal(100 + (n if i == n % holdings else 0)),
                    average_price=Decimal("1234.5678"),
                )
                for i in range(holdings)
            ),
        )
        for n in range(count)
    ]
