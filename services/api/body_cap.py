"""A cap on request bodies, enforced as they stream in: an oversized body is never held whole.

A Content-Length over the cap is a 413 before the app runs. Otherwise bytes are counted as the app
receives them; at the first byte over the cap the client gets the 413, the app is told the client
left (so it stops reading), and whatever it answers after that is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestBodyCap:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, larger: Sequence[tuple[re.Pattern[str], int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = tuple(larger)  # (path pattern, its own cap): routes that take more

    def cap_for(self, path: str) -> int:
        return next((cap for pattern, cap in self.larger if pattern.match(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            await _too_large(send, cap)
            return
        received = 0
        refused = False
        started = False

        async def capped_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > cap:
                    refused = True
                    if not started:
                        await _too_large(send, cap)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the client has its 413; the app's answer to a "disconnect" goes nowhere
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except ClientDisconnect:
            if not refused:
                raise


async def _too_large(send: Send, cap: int) -> None:
    body = json.dumps({"detail": f"the request body is larger than this route takes ({cap} bytes)"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
