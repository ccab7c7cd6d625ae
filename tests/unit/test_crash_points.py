"""The crash points the chaos suite arms: inert unless PORTFOLIO_SYNC_TEST_CRASH_AT names them, and
then a SIGKILL of the process at the chosen pass."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from shared.test_hooks import CRASH_AT_ENV, LEDGER_AFTER_COPY, LEDGER_AFTER_RELAY_ACK

PASSES = f"""
from shared.test_hooks import crash_point
for n in range(1, 6):
    crash_point({LEDGER_AFTER_RELAY_ACK!r})
    crash_point({LEDGER_AFTER_COPY!r})
    print(n, flush=True)
"""


def _run(armed: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PASSES],
        env={**os.environ, CRASH_AT_ENV: armed},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unarmed_crash_point_does_nothing() -> None:
    done = _run("")
    assert done.returncode == 0 and done.stdout.split() == ["1", "2", "3", "4", "5"]


def test_an_armed_point_kills_the_process_at_the_pass_it_names() -> None:
    done = _run(f"{LEDGER_AFTER_COPY}:3")
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]


def test_an_armed_point_without_a_count_kills_at_the_first_pass() -> None:
    done = _run(LEDGER_AFTER_RELAY_ACK)
    assert done.returncode == -signal.SIGKILL and done.stdout == ""


@pytest.mark.parametrize("armed", ["ledger.nowhere", "ledger.after_copy:x"])
def test_a_misspelt_crash_point_fails_loudly(armed: str) -> None:
    done = _run(armed)
    assert done.returncode == 1 and "ValueError" in done.stderr
