"""`make up` restarts a service that dies (infra/supervise), and `make down` still stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

SUPERVISE = Path(__file__).resolve().parents[2] / "infra" / "supervise"


def _until(condition: object, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_service_that_dies_is_restarted_and_each_restart_is_logged(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    log = tmp_path / "service.log"
    with log.open("w") as out:
        supervisor = subprocess.Popen(
            [str(SUPERVISE), "unit-service", "--", "sh", "-c", f"echo run >> {runs}; exit 3"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "SUPERVISE_FIRST_BACKOFF": "1"},
        )
    try:
        _until(lambda: runs.exists() and len(runs.read_text().split()) >= 2, timeout_s=10, what="a restart")
        assert "unit-service exited with status 3; restarting in 1s" in log.read_text()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 0


def test_stopping_the_supervisor_stops_the_service_and_does_not_restart_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    supervisor = subprocess.Popen(
        [str(SUPERVISE), "unit-service", "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _until(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout_s=10, what="the service")
    child = int(pid_file.read_text())
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=10) == 0

    def child_gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return False

    _until(child_gone, timeout_s=5, what="the service to stop")
