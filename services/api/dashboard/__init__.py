"""The web dashboard: static pages and ES modules under `/ui`, served by the API on its own port.

The pages are plain HTML; each loads one module from `static/js/` that talks to the JSON API
(`/v1/...`) with the user's token, kept in the tab's sessionStorage and sent as a bearer header —
never in a URL, and no cookie, so there is nothing for another site to forge (no CSRF). Every value
reaches the page as text (`dom.js` sets `textContent`, never HTML), and the Content-Security-Policy
below lets a page load scripts, styles and data from its own origin only. Nothing is fetched from
the internet: Chart.js ships in `static/vendor/` (see its README).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI = "/ui"
STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    # A new release's pages and modules are picked up at once (they are small; revalidation is cheap).
    (b"cache-control", b"no-cache"),
]


def mount_dashboard(app: FastAPI) -> None:
    """Serve the dashboard at /ui/ (and send / there)."""
    app.mount(UI, _SecurityHeaders(StaticFiles(directory=STATIC, html=True)), name="dashboard")
    app.add_route("/", _to_dashboard, include_in_schema=False)


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse(f"{UI}/", status_code=307)


class _SecurityHeaders:
    """Adds the dashboard's security headers to every response of the app it wraps."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self._app(scope, receive, send_with_headers)
