"""A broker's round trip: hold each answer of a fake back, as a distant API would."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Delayed:
    """`app`, answering each HTTP request `latency_s` after it came in (counted on arrival)."""

    def __init__(self, app: ASGIApp, latency_s: float) -> None:
        self.app = app
        self.latency_s = latency_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answer_at = asyncio.get_running_loop().time() + self.latency_s

        async def send_late(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(max(0.0, answer_at - asyncio.get_running_loop().time()))
            await send(message)

        await self.app(scope, receive, send_late)
