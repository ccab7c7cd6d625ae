"""A clock for tests that count requests in the API's rate-limit windows.

The windows are fixed and aligned on the epoch (a minute per token, an hour per address). A test
that sends a limit's worth of requests on the real clock fails whenever a window turns over between
them. This clock starts at the beginning of the current hour (the start of an hour window and of a
minute window alike) and runs on from there in real time, so a test has a whole minute before a
token's window turns."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from services.api import fast_holdings, guard
from services.api.storage_limits import window_start
from shared.events import utc_now


@pytest.fixture
def fresh_windows(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Run the API's rate-limit clock from the start of a window; returns that start."""
    start = window_start(utc_now(), guard.SIGN_UP_WINDOW)
    began = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=time.monotonic() - began)

    for module in (guard, fast_holdings):
        monkeypatch.setattr(module, "utc_now", now)
    return start
