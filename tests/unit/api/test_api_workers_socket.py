"""The socket `portfolio-sync api --workers N` listens on gives connections that send at once.

asyncio turns off Nagle's algorithm (TCP_NODELAY) only on sockets whose protocol says TCP; a socket
made as `socket(AF_INET, SOCK_STREAM)` says 0, and so do the connections it accepts. Without it a
response written in two parts waited for the client's delayed ACK: `/healthz` served by two workers
took 44 ms at the median, against 6 ms once fixed (`bench/api.py`'s load, 32 connections)."""

from __future__ import annotations

import asyncio
import os
import socket

from services.api.workers import _listening_socket


async def test_connections_to_the_workers_socket_are_not_delayed_by_nagle() -> None:
    listening = _listening_socket("127.0.0.1", 0)
    # As a spawned worker receives it (multiprocessing rebuilds it from a duplicated descriptor with
    # the family, type and protocol it was pickled with).
    family, kind, protocol = listening.family, listening.type, listening.proto
    inherited = socket.socket(family, kind, protocol, fileno=os.dup(listening.fileno()))
    listening.close()
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = writer.get_extra_info("socket")
        accepted.set_result(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(handle, sock=inherited)
    try:
        _, writer = await asyncio.open_connection(*inherited.getsockname())
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
