"""The dashboard's pages and modules, as the API serves them (what a browser does with them is
tests/browser)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from services.api.dashboard import CONTENT_SECURITY_POLICY, STATIC

PAGES = sorted(path.name for path in STATIC.glob("*.html"))
ASSETS = sorted(str(path.relative_to(STATIC)) for path in STATIC.rglob("*") if path.suffix in {".js", ".css"})


async def test_the_root_leads_to_the_dashboard(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


@pytest.mark.parametrize("page", ["", *PAGES])
async def test_every_page_is_served_with_a_policy_that_allows_only_its_own_origin(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(f"/ui/{page}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("asset", ASSETS)
async def test_modules_and_styles_are_served_with_their_types(client: httpx.AsyncClient, asset: str) -> None:
    response = await client.get(f"/ui/{asset}")
    assert response.status_code == 200
    expected = "text/css" if asset.endswith(".css") else "text/javascript"
    assert response.headers["content-type"].startswith(expected)


async def test_a_missing_page_is_a_404_not_a_500(client: httpx.AsyncClient) -> None:
    assert (await client.get("/ui/no-such-page.html")).status_code == 404
    assert (await client.get("/ui/../pyproject.toml")).status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_nothing_from_another_origin_and_run_no_inline_script(page: str) -> None:
    html = (STATIC / page).read_text()
    for reference in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not re.match(r"^[a-z]+:|^//", reference), f"{page} loads {reference} from elsewhere"
    # Scripts are modules from files: the policy would block inline code anyway.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "style=" not in html and "<style" not in html


@pytest.mark.parametrize("module", sorted(Path(STATIC / "js").glob("*.js")), ids=lambda p: p.name)
def test_modules_never_write_html(module: Path) -> None:
    source = module.read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", source), module.name
    # Only the API's own origin: fetch relative paths.
    assert not re.search(r"fetch\(\s*[\"'`]https?:", source), module.name


async def test_the_api_docs_page_loads_swagger_ui_from_the_package_not_a_cdn(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/docs")).text
    scripts_and_styles = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert "/ui/vendor/swagger-ui-bundle.js" in scripts_and_styles
    assert all(reference.startswith("/") for reference in scripts_and_styles), scripts_and_styles
    for reference in scripts_and_styles:
        assert (await client.get(reference)).status_code == 200
    assert (await client.get("/redoc")).status_code == 404
