"""`portfolio-sync api --workers N`: N API processes serving one listening socket.

The parent binds the port once (a port already taken is one clear error, not N), starts the workers
(spawned, not forked: nothing the parent holds leaks into them) and then only waits. Each worker is a
whole API process: its own engine, bus and lifespan, and its metrics on METRICS_PORT + its index.
SIGTERM or SIGINT to the parent stops every worker cleanly; a worker that ends by itself (a failed
startup, a crash) stops the others too, and the parent exits with its status, so that whoever runs
the API (systemd, an orchestrator) sees one failure and restarts one thing.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from shared.logs import configure_logging
from shared.runtime import run_until_signalled
from shared.settings import Settings

STOP_TIMEOUT_SECONDS = 30.0
"""How long a worker gets to finish its requests and close its clients before it is killed."""


def serve_workers(settings: Settings, count: int) -> int:
    """Serve on API_HOST:API_PORT with `count` worker processes until SIGINT/SIGTERM; the exit status."""
    listening = _listening_socket(settings.api_host, settings.api_port)
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_worker, args=(_worker_settings(settings, i), listening), name=f"api-{i}")
        for i in range(count)
    ]
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_fd = signal.set_wakeup_fd(wake)
    try:
        for worker in workers:
            worker.start()
        listening.close()  # the workers hold it now
        wait([woken, *(w.sentinel for w in workers)])
        first_ended = next((w for w in workers if w.exitcode is not None), None)
        return _stop(workers, first_ended)
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(woken)
        os.close(wake)


def _stop(workers: Sequence[BaseProcess], first_ended: BaseProcess | None) -> int:
    """SIGTERM every worker still running and wait for all; a worker that overstays is killed."""
    for worker in workers:
        if worker.exitcode is None:
            worker.terminate()
    for worker in workers:
        worker.join(STOP_TIMEOUT_SECONDS)
        if worker.exitcode is None:
            worker.kill()
            worker.join()
    if first_ended is not None:  # ended by itself: a failure, even with status 0 or by a signal
        code = first_ended.exitcode or 0
        return code if code > 0 else 1
    return 0 if all(w.exitcode == 0 for w in workers) else 1


def _worker_settings(settings: Settings, index: int) -> Settings:
    """Each worker's metrics on a port of its own (METRICS_PORT + index), when metrics are served."""
    if settings.metrics_port == 0:
        return settings
    return settings.model_copy(update={"metrics_port": settings.metrics_port + index})


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind((host, port))
    listening.listen(2048)
    listening.set_inheritable(True)
    return listening


def _worker(settings: Settings, listening: socket.socket) -> None:
    """One worker process: the API served on the inherited socket until SIGTERM."""
    from services.api.main import serve

    configure_logging(settings.log_level)
    asyncio.run(run_until_signalled(lambda stop: serve(settings, stop, sockets=[listening])))
