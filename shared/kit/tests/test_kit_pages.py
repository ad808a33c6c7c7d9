"""Browser pages served by every service: offline docs, the front page, the event catalogue."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import urljoin

import httpx
import pytest
import pytest_asyncio
from agora_contract import EVENT_TYPES
from agora_contract.topics import DOMAIN_TOPICS
from agora_kit.pages import PAGES_CSP, REDOC_CSP, SWAGGER_CSP, install_pages
from agora_kit.pages.catalogue import type_text
from fastapi import FastAPI

SRC_OR_HREF = re.compile(r'(?:src|href)="([^"]+)"')


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI(docs_url=None, redoc_url=None)
    install_pages(app, title="Things")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        yield c


def _no_inline_script(page: str) -> None:
    assert "<script>" not in page
    assert re.search(r"<script(?![^>]*\bsrc=)", page) is None
    assert " on" + "load=" not in page


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "csp"), [("/docs", SWAGGER_CSP), ("/redoc", REDOC_CSP)])
async def test_docs_pages_load_nothing_from_outside(
    client: httpx.AsyncClient, path: str, csp: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == csp
    _no_inline_script(resp.text)
    links = SRC_OR_HREF.findall(resp.text)
    assert links
    for link in links:
        assert "//" not in link, link  # relative: works under the gateway's /<service> prefix
        # Resolved as the browser does under the gateway's prefix, then with it stripped.
        url = urljoin(f"http://gw/users{path}", link)
        assert url.startswith("http://gw/users/")
        asset = await client.get(url.removeprefix("http://gw/users"))
        assert asset.status_code == 200, link
        assert asset.headers["x-content-type-options"] == "nosniff"


@pytest.mark.asyncio
async def test_docs_bundles_are_the_real_ones(client: httpx.AsyncClient) -> None:
    swagger = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert swagger.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle" in swagger.text[:2000]
    assert len(swagger.content) > 500_000
    redoc = await client.get("/redoc/assets/redoc.standalone.js")
    assert len(redoc.content) > 500_000
    css = await client.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path", ["/docs/assets/nope.js", "/docs/assets/..%2F__init__.py", "/assets/swagger-ui.css"]
)
async def test_only_listed_assets_are_served(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 404


@pytest.mark.asyncio
async def test_front_page_links_every_service_the_inbox_and_the_catalogue(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == PAGES_CSP
    assert "frame-ancestors 'none'" in PAGES_CSP
    _no_inline_script(resp.text)
    links = set(SRC_OR_HREF.findall(resp.text))
    for service in ("users", "items", "notifier"):
        assert {f"{service}/docs", f"{service}/redoc"} <= links
        assert f'data-health="{service}/health/ready"' in resp.text
    assert {"mail/", "events", "assets/pages.css", "assets/home.js"} <= links
    for asset in ("/assets/pages.css", "/assets/home.js"):
        assert (await client.get(asset)).status_code == 200


@pytest.mark.asyncio
async def test_catalogue_shows_every_topic_and_event_type(client: httpx.AsyncClient) -> None:
    resp = await client.get("/events")
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == PAGES_CSP
    _no_inline_script(resp.text)
    page = resp.text
    for topic in DOMAIN_TOPICS:
        assert f"<code>{topic}</code>" in page
    for event_type in EVENT_TYPES:
        assert f'id="{event_type}"' in page
    # Fields with type and required, from the JSON Schema; consumers from the AsyncAPI document.
    registered = page.split('id="agora.users.user.registered.v1"', 1)[1].split('class="event"')[0]
    row = "<td><code>registered_at</code></td><td>string (date-time)</td><td>yes</td>"
    assert row in registered
    assert "Example envelope" in registered
    assert "consumers inside Agora: <strong>items, notifier</strong>" in page


def test_type_text() -> None:
    assert type_text({"type": "string", "format": "uuid"}) == "string (uuid)"
    assert type_text({"$ref": "#/$defs/FieldChange"}) == "FieldChange"
    assert type_text({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string | null"
    assert type_text({"type": "array", "items": {"type": "integer"}}) == "integer[]"
    assert type_text({"type": "object", "additionalProperties": {"$ref": "#/x/Y"}}) == "map of Y"
    assert type_text({}) == "any JSON value"
    assert type_text({"const": "a"}) == 'const "a"'
