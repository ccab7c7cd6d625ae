"""A fake Alpaca (`GET /v2/positions`) for many accounts whose answers change over time.

Each account is a key pair; what it holds is a function of the account and the current epoch, which
the test advances (a second or so apart), so successive syncs see quantities move and instruments
come and go. The fake remembers what it last answered each account: the truth the ledger's current
positions must end up equal to.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.types import Receive, Scope, Send

SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "TSLA")
ALWAYS_HELD = 5  # the first five are always held (so no snapshot looks like a broker error)


def _number(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=4).digest())


def positions(key_id: str, epoch: int) -> dict[str, Decimal]:
    """{symbol: quantity} the account `key_id` holds during `epoch`."""
    held = {symbol: Decimal(1 + _number(key_id, symbol, epoch) % 500) for symbol in SYMBOLS[:ALWAYS_HELD]}
    if _number(key_id, epoch) % 2:
        held[SYMBOLS[ALWAYS_HELD]] = Decimal(1 + _number(key_id, "extra", epoch) % 50)
    return held


def _position_json(symbol: str, quantity: Decimal) -> dict[str, Any]:
    return {
        "asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)),
        "symbol": symbol,
        "exchange": "NASDAQ",
        "asset_class": "us_equity",
        "avg_entry_price": "100.25",
        "qty": str(quantity),
        "side": "long",
        "current_price": "101.50",
    }


@dataclass
class ChangingBroker:
    """The ASGI app. `epoch` moves on when the test says; `last_reported` is per key id."""

    secret: str = "chaos-secret"
    epoch: int = 0
    requests_seen: int = 0
    last_reported: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    def advance(self) -> None:
        self.epoch += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        key_id = headers.get("apca-api-key-id", "")
        if scope["path"] != "/v2/positions":
            await _answer(send, 404, {"message": "not found"})
        elif not key_id or headers.get("apca-api-secret-key") != self.secret:
            await _answer(send, 401, {"code": 40110000, "message": "request is not authorized"})
        else:
            self.requests_seen += 1
            held = positions(key_id, self.epoch)
            self.last_reported[key_id] = held
            await _answer(send, 200, [_position_json(s, q) for s, q in held.items()])


async def _answer(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
