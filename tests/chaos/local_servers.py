"""A Kafka or Postgres started by kafka-local / pg-local for the chaos tests alone, which a fault may
stop and start again (same directory, same port)."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class LocalServer:
    """A Kafka or Postgres started by kafka-local / pg-local for one test module alone."""

    script: str
    workdir: str
    port: int
    start_args: tuple[str, ...] = ()
    proxied_port: int | None = None  # Kafka: clients bootstrapping here stay on this port (a proxy's)
    proxied_target: int | None = None  # ... which forwards to this listener of the broker

    async def stop(self, *extra: str) -> None:
        await asyncio.to_thread(_run, self.script, "stop", "--dir", self.workdir, *extra)

    async def start(self) -> None:
        await asyncio.to_thread(
            _run, self.script, "start", "--dir", self.workdir, "--port", str(self.port), *self.start_args
        )


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=180)
