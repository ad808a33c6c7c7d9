"""Docs pages behind the gateway's /<service> prefix point at the prefixed OpenAPI document."""

from __future__ import annotations

import httpx
import pytest
from agora_kit.docsprefix import DocsPrefixMiddleware
from fastapi import FastAPI


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v1/things")
    async def things() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(DocsPrefixMiddleware)
    return app


@pytest.mark.asyncio
async def test_docs_use_the_forwarded_prefix() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        plain = await client.get("/docs")
        assert "'/openapi.json'" in plain.text
        prefixed = await client.get("/docs", headers={"X-Forwarded-Prefix": "/items"})
        assert "'/items/openapi.json'" in prefixed.text
        redoc = await client.get("/redoc", headers={"X-Forwarded-Prefix": "/items/"})
        assert "/items/openapi.json" in redoc.text
        hostile = await client.get("/docs", headers={"X-Forwarded-Prefix": "/x'><script>"})
        assert "'/openapi.json'" in hostile.text


@pytest.mark.asyncio
async def test_api_routes_ignore_the_prefix() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        resp = await client.get("/api/v1/things", headers={"X-Forwarded-Prefix": "/api"})
        assert resp.status_code == 200
        assert resp.json() == {"ok": "yes"}
