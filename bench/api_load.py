"""A small HTTP/1.1 load generator for bench/api.py: keep-alive connections on asyncio streams.

httpx parses and builds far more than a benchmark needs and would cost the client more CPU than the
server spends on /healthz; here a request is one pre-built byte string and a response is read by
its Content-Length. Closed loop (each connection sends its next request when the last is answered)
for the most a server serves; open loop at a fixed rate (latency counted from when each request was
due, so a stalled server is not hidden by requests that were never sent) for latency at a load.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> dict[str, object]:
        cuts = statistics.quantiles(self.latencies_ms, n=100, method="inclusive")
        return {
            "requests_per_s": round(self.per_s, 1),
            "p50_ms": round(cuts[49], 1),
            "p99_ms": round(cuts[98], 1),
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "client_cpu_percent": round(100 * self.client_cpu_s / self.seconds, 1),
        }


def request_bytes(host: str, path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Accept: application/json\r\n\r\n".encode()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def run_load(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    seconds: float,
    warmup_s: float,
    rate: float | None = None,
) -> LoadResult:
    """`connections` connections sending requests drawn at random from `requests`: as fast as answered
    (`rate` None) or `rate` per second in all; what was answered during the `seconds` after warm-up."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    loop = asyncio.get_running_loop()
    started = loop.time()
    measure_from, measure_to = started + warmup_s, started + warmup_s + seconds
    issued = 0  # open loop: the index of the next due request

    async def connection() -> None:
        nonlocal issued
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                if rate is None:
                    due = loop.time()
                else:
                    due = started + issued / rate
                    issued += 1
                    if due > loop.time():
                        await asyncio.sleep(due - loop.time())  # the schedule of an open-loop load
                if due >= measure_to:
                    return
                request = random.choice(requests)
                try:
                    status = await _exchange(reader, writer, request)
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    # The server closed a connection idle longer than its keep-alive (a slow
                    # open-loop rate): connect again and send the request again, as a browser does.
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    status = await _exchange(reader, writer, request)
                done = loop.time()
                if due >= measure_from:
                    latencies.append((done - due) * 1000)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    cpu_before = time.process_time()
    await asyncio.gather(*(connection() for _ in range(connections)))
    cpu = time.process_time() - cpu_before
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        latencies_ms=latencies,
        statuses=statuses,
        client_cpu_s=cpu * seconds / (loop.time() - started),
    )
