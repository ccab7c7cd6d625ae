"""Run `portfolio-sync` subcommands as real OS processes, with their output kept for failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcesses:
    """Started services; `stop_all` ends them and `logs` tells what they printed."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self._env = {**os.environ, **env}
        self._log_dir = log_dir
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: list[BinaryIO] = []
        self._ended: set[str] = set()  # stopped or killed on purpose: not "exited early"

    def start(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start (or restart, appending to its log) the service `name`; `env` adds to the shared
        environment for this process only (say, its own METRICS_PORT)."""
        return self.start_module(name, "services.cli", *args, env=env)

    def start_module(
        self, name: str, module: str, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Like `start`, for a program that is not a `portfolio-sync` subcommand (an example)."""
        log = (self._log_dir / f"{name}.log").open("ab")
        self._log_files.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env={**self._env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._running[name] = process
        self._ended.discard(name)
        return process

    def run(self, *args: str, timeout_s: float = 120) -> str:
        """Run a short command to completion; raise with its output if it fails."""
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            raise AssertionError(f"portfolio-sync {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done.stdout

    def stop(self, name: str, timeout_s: float = 20) -> int:
        """SIGTERM, as an orchestrator scaling down does; return the exit status."""
        process = self._running[name]
        self._ended.add(name)
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout_s)

    def pid(self, name: str) -> int:
        return self._running[name].pid

    def kill_hard(self, name: str) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        process = self._running[name]
        self._ended.add(name)
        process.kill()
        process.wait()

    def returncode(self, name: str) -> int | None:
        """The exit status of `name` once it has ended, counted as intended (a crash a test armed)."""
        code = self._running[name].poll()
        if code is not None:
            self._ended.add(name)
        return code

    def exited(self) -> dict[str, int]:
        """The services that ended without being stopped or killed on purpose, with their status."""
        return {
            name: p.returncode
            for name, p in self._running.items()
            if name not in self._ended and p.poll() is not None
        }

    def assert_alive(self) -> None:
        dead = self.exited()
        if dead:
            raise AssertionError(f"service(s) exited early: {dead}\n{self.logs()}")

    def stop_all(self, timeout_s: float = 20) -> dict[str, int]:
        for process in self._running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = {}
        for name, process in self._running.items():
            try:
                codes[name] = process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        for log in self._log_files:
            log.close()
        return codes

    def log_of(self, name: str) -> str:
        """Everything `name` printed so far (over its restarts)."""
        return (self._log_dir / f"{name}.log").read_text(errors="replace")

    def logs(self, tail_lines: int = 40) -> str:
        parts = []
        for path in sorted(self._log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail_lines:]
            parts.append(f"--- {path.stem} ---\n" + "\n".join(lines))
        return "\n".join(parts)
