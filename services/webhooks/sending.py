"""One POST of a webhook: to a checked address (services.webhooks.addresses), no redirect followed,
short timeouts, and at most `MAX_ANSWER_BYTES` of the answer read."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from services.webhooks.addresses import Network, RefusedAddress, checked_address

MAX_ANSWER_BYTES = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ERROR_CHARS = 300


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: delivered (a 2xx), or why not."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    """Sends webhooks over one HTTP client (open it with `async with`)."""

    def __init__(
        self,
        *,
        allowed_networks: Sequence[Network],
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._allowed = tuple(allowed_networks)
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: the request goes where it was checked to go
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            headers={"user-agent": "portfolio-sync-webhooks", "content-type": "application/json"},
        )

    async def __aenter__(self) -> WebhookSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, url: str, headers: Mapping[str, str], body: bytes) -> Outcome:
        target = httpx.URL(url)
        host = target.host
        port = target.port or _DEFAULT_PORTS[target.scheme]
        try:
            address = await checked_address(host, port, self._allowed)
        except RefusedAddress as exc:
            return Outcome(False, error=str(exc))
        pinned = target.copy_with(host=str(address))
        request_headers = {**headers, "host": target.netloc.decode("ascii")}
        extensions = {"sni_hostname": host} if target.scheme == "https" else {}
        try:
            # A receiver that trickles its answer is cut off too: every read has the timeout, and the
            # whole exchange three times it.
            async with asyncio.timeout(self._timeout_s * 3):
                request = self._client.build_request(
                    "POST", pinned, headers=request_headers, content=body, extensions=extensions
                )
                response = await self._client.send(request, stream=True)
                try:
                    await _read_at_most(response, MAX_ANSWER_BYTES)
                finally:
                    await response.aclose()
        except TimeoutError:
            return Outcome(False, error=f"no answer within {self._timeout_s * 3:g} s")
        except httpx.TimeoutException as exc:
            return Outcome(False, error=f"timed out ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS])
        if response.is_success:
            return Outcome(True, response.status_code)
        if response.is_redirect:
            location = response.headers.get("location", "")[:200]
            return Outcome(
                False, response.status_code, f"redirect to {location!r} not followed: webhooks follow none"
            )
        return Outcome(False, response.status_code, f"answered {response.status_code}")


async def _read_at_most(response: httpx.Response, limit: int) -> None:
    """Read the answer up to `limit` bytes (and stop there): only its status matters."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= limit:
            break
