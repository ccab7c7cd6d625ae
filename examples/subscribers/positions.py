"""Each account's positions from `holdings.current` and `holdings.changes`: the rules both examples
apply (docs/events.md, "Bootstrap"). Plain JSON in, plain JSON out: a subscriber needs none of
portfolio-sync's code.

An account's state is `{"as_of": <time>, "positions": {"<symbol>@<exchange>": "<quantity>"}}`. The
rules hold whatever order the two topics are read in, so a subscriber may read both at once (faust
does): a CurrentHoldings at least as new as the state replaces it; a HoldingsChanged newer than the
state moves it; anything older is already in it.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

State = dict[str, Any]


def on_current(state: State | None, value: bytes | None) -> State | None:
    """A record of `holdings.current`: the account's complete positions, or None (a tombstone)."""
    if not value:
        return None  # the account was removed
    event = json.loads(value)
    if state is not None and _time(event["as_of"]) < _time(state["as_of"]):
        return state
    return {
        "as_of": event["as_of"],
        "positions": {_instrument(p): p["quantity"] for p in event["positions"]},
    }


def on_change(state: State | None, value: bytes) -> State | None:
    """A record of `holdings.changes`: HoldingsChanged, or AccountRemoved."""
    event = json.loads(value)
    kind = event.get("event_type")
    if kind == "account_removed":
        return None
    if kind is not None or state is None:
        # A type this subscriber does not know; or an account it has no state of yet: the
        # CurrentHoldings the ledger wrote with this change brings the account in.
        return state
    if _time(event["taken_at"]) <= _time(state["as_of"]):
        return state  # already in the state (the bootstrap's, or a redelivery)
    positions = dict(state["positions"])
    for change in event["changes"]:
        if Decimal(change["quantity"]) == 0:
            positions.pop(_instrument(change), None)
        else:
            positions[_instrument(change)] = change["quantity"]
    return {"as_of": event["taken_at"], "positions": positions}


def _instrument(position: dict[str, Any]) -> str:
    return f"{position['symbol']}@{position['exchange']}"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
