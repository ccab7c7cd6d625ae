"""A TCP proxy on 127.0.0.1 that a test can slow down or cut: a bad network between one service
and what it talks to (Kafka, say), without touching either."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forwards connections on `port` to `target_port`. `delay_s` holds every chunk that long in
    each direction; `cut()` closes every connection and refuses new ones until `restore()`."""

    def __init__(self, port: int, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        self.port = port
        self.delay_s = 0.0
        self.connections = 0  # forwarded so far
        self._target = (target_host, target_port)
        self._cut = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as when a link dies: no goodbye
        self._writers.clear()

    def restore(self) -> None:
        self._cut = False

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._cut:
            client_writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {client_writer, upstream_writer}
        for reader, writer in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)  # the injected latency
                if self._cut:
                    break
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the other side went away, or the proxy cut it
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.transport.abort() if self._cut else writer.close()
