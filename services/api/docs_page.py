"""`/docs`: Swagger UI over the app's OpenAPI document, from files the package ships
(`dashboard/static/vendor/`), so that the page fetches nothing from the internet. ReDoc, which
FastAPI would load from a CDN, is not served."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import Response

from services.api.dashboard import UI

DOCS = "/docs"
_VENDOR = f"{UI}/vendor"


def serve_docs(app: FastAPI) -> None:
    async def docs(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{_VENDOR}/swagger-ui-bundle.js",
            swagger_css_url=f"{_VENDOR}/swagger-ui.css",
            swagger_favicon_url=f"{_VENDOR}/favicon-32x32.png",
        )

    app.add_route(DOCS, docs, include_in_schema=False)
