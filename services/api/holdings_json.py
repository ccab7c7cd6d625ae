"""The holdings responses encoded straight from positions: the very bytes the response models
(`PositionOut`, `ConsolidatedHoldingOut`) give, without building and serialising a model per line.

A portfolio read lists some 200 positions; through the models, each became a validated object and
its JSON, most of the request's CPU. Here a line is a dict of strings, encoded by the C encoder
of `json` with the separators and escaping of pydantic's (tests/unit/api/test_api_holdings_json.py
pins the equality). Times and ids repeat across a response's lines (an account's positions share
its snapshot time), so each distinct one is formatted once per response, by pydantic itself.

The routes' path: on SQLite, and on Postgres for what the fast path leaves to the declared route;
the fast path gets the same bytes from Postgres itself (holdings_json_sql.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import Response
from pydantic import AwareDatetime, TypeAdapter

from services.api.consolidation import ConsolidatedHolding, Position, market_value
from services.api.schemas import decimal_text

_TIME = TypeAdapter(AwareDatetime)
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


class _Texts:
    """What one response's times and ids read as, each worked out once."""

    def __init__(self) -> None:
        self._times: dict[datetime, str] = {}
        self._ids: dict[uuid.UUID, str] = {}

    def time(self, value: datetime) -> str:
        text = self._times.get(value)
        if text is None:
            text = self._times[value] = _TIME.dump_python(value, mode="json")
        return text

    def id(self, value: uuid.UUID) -> str:
        text = self._ids.get(value)
        if text is None:
            text = self._ids[value] = str(value)
        return text


def _optional(value: Decimal | None) -> str | None:
    return None if value is None else decimal_text(value)


def json_response(lines: list[dict[str, Any]]) -> Response:
    return Response(_encode(lines).encode(), media_type="application/json")


def account_holdings(positions: Sequence[Position]) -> Response:
    """As `list[PositionOut]` would serialise."""
    texts = _Texts()
    return json_response(
        [
            {
                "symbol": p.symbol,
                "exchange": p.exchange,
                "isin": p.isin,
                "currency": p.currency,
                "asset_type": p.asset_type,
                "quantity": decimal_text(p.quantity),
                "average_price": decimal_text(p.average_price),
                "last_price": _optional(p.last_price),
                "market_value": _optional(market_value(p.quantity, p.last_price)),
                "as_of": texts.time(p.as_of),
            }
            for p in positions
        ]
    )


def portfolio_holdings(holdings: Sequence[ConsolidatedHolding]) -> Response:
    """As `list[ConsolidatedHoldingOut]` would serialise."""
    texts = _Texts()
    return json_response(
        [
            {
                "symbol": h.symbol,
                "exchange": h.exchange,
                "currency": h.currency,
                "isin": h.isin,
                "asset_type": h.asset_type,
                "quantity": decimal_text(h.quantity),
                "average_price": _optional(h.average_price),
                "last_price": _optional(h.last_price),
                "market_value": _optional(h.market_value),
                "accounts": [
                    {
                        "account_id": texts.id(a.account_id),
                        "quantity": decimal_text(a.quantity),
                        "average_price": decimal_text(a.average_price),
                        "as_of": texts.time(a.as_of),
                    }
                    for a in h.accounts
                ],
            }
            for h in holdings
        ]
    )
