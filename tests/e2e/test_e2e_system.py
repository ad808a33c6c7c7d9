"""End to end: every process as `agora up` starts it, all traffic through the Traefik gateway."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from agora_contract import Envelope, topics
from agora_deploy.launchers.gateway import start_gateway
from agora_deploy.launchers.process import free_port
from agora_deploy.testing import SystemStack, verify_address
from agora_kit.testing.mail import MailClient
from agora_kit.testing.poll import eventually_sync
from aiokafka import AIOKafkaConsumer, TopicPartition

TOKEN = re.compile(r"[?&]token=([^\s&\"'<>]+)")


def _email() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}@example.com"


def _register(gw: httpx.Client, email: str, **headers: str) -> tuple[dict[str, Any], str]:
    password = f"pw-{uuid.uuid4().hex}"
    resp = gw.post(
        "/api/v1/users",
        json={"email": email, "name": "E2E Person", "password": password},
        headers=headers,
    )
    assert resp.status_code == 201, resp.text
    return resp.json(), password


def _login(gw: httpx.Client, email: str, password: str) -> dict[str, str]:
    resp = gw.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": email, "password": password},
    )
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def _user(gw: httpx.Client) -> tuple[dict[str, Any], str, dict[str, str]]:
    email = _email()
    user, password = _register(gw, email)
    return user, email, _login(gw, email, password)


def test_registration_sends_welcome_and_verification(
    gateway: httpx.Client, mail: MailClient
) -> None:
    email = _email()
    user, password = _register(gateway, email)
    assert set(user) >= {"id", "email", "name"}
    assert "password" not in str(user)
    welcome = mail.wait_subject(email, "welcome")
    assert "E2E Person" in welcome["Text"]
    verification = mail.wait_subject(email, "confirm your email")
    assert verification["HTML"]
    found = TOKEN.search(verification["Text"])
    assert found, verification["Text"]
    resp = gateway.post("/api/v1/auth/verify-email", json={"token": unquote(found.group(1))})
    assert resp.status_code == 200, resp.text
    me = gateway.get("/api/v1/users/me", headers=_login(gateway, email, password))
    assert me.json()["email_verified"] is True
    # Exactly one of each: no duplicate email.
    time.sleep(1)
    subjects = [m["Subject"] for m in mail.to(email)]
    assert len(subjects) == 2, subjects


def test_item_lifecycle_mails_the_owner(gateway: httpx.Client, mail: MailClient) -> None:
    _, email, auth = _user(gateway)
    verify_address(gateway, mail, email)  # item mail goes to verified addresses only
    created = gateway.post(
        "/api/v1/items",
        json={"name": "Brass lamp", "price": "40.00", "tags": ["Lamp"]},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    item = created.json()
    assert created.headers["location"].endswith(f"/api/v1/items/{item['id']}")
    assert item["tags"] == ["lamp"]
    mail.wait_subject(email, '"Brass lamp" is listed')
    public = gateway.get(f"/api/v1/items/{item['id']}")
    assert public.status_code == 200
    etag = public.headers["etag"]
    assert (
        gateway.get(f"/api/v1/items/{item['id']}", headers={"If-None-Match": etag}).status_code
        == 304
    )
    changed = gateway.patch(
        f"/api/v1/items/{item['id']}", json={"price": "35.50"}, headers={**auth, "If-Match": etag}
    )
    assert changed.status_code == 200, changed.text
    stale = gateway.patch(
        f"/api/v1/items/{item['id']}", json={"price": "1.00"}, headers={**auth, "If-Match": etag}
    )
    assert stale.status_code == 412
    change_mail = mail.wait_subject(email, '"Brass lamp" was changed')
    assert "40.00" in change_mail["Text"]
    assert "35.50" in change_mail["Text"]
    assert gateway.delete(f"/api/v1/items/{item['id']}", headers=auth).status_code == 204
    removed = mail.wait_subject(email, '"Brass lamp" was removed')
    assert removed["Text"]
    assert gateway.get(f"/api/v1/items/{item['id']}").status_code == 404


def test_deleting_the_user_removes_items_and_says_goodbye(
    gateway: httpx.Client, mail: MailClient
) -> None:
    user, email, auth = _user(gateway)
    verify_address(gateway, mail, email)  # the goodbye goes to a verified address only
    for name in ("Chair", "Table"):
        resp = gateway.post("/api/v1/items", json={"name": name, "price": "10.00"}, headers=auth)
        assert resp.status_code == 201, resp.text
    listing = gateway.get("/api/v1/items", params={"owner_id": user["id"]}).json()
    assert listing["total"] == 2
    assert gateway.delete("/api/v1/users/me", headers=auth).status_code == 204
    mail.wait_subject(email, "account was deleted")
    eventually_sync(
        lambda: gateway.get("/api/v1/items", params={"owner_id": user["id"]}).json()["total"] == 0
    )
    # The deleted account's token no longer works anywhere.
    assert gateway.get("/api/v1/users/me", headers=auth).status_code == 401


def test_auth_and_object_level_authorization(gateway: httpx.Client) -> None:
    no_token = gateway.post("/api/v1/items", json={"name": "x", "price": "1.00"})
    assert no_token.status_code == 401
    assert no_token.headers["content-type"].startswith("application/problem+json")
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    _, _, owner = _user(gateway)
    _, _, other = _user(gateway)
    item = gateway.post(
        "/api/v1/items", json={"name": "Mine", "price": "5.00"}, headers=owner
    ).json()
    for method, body in (("PATCH", {"price": "1.00"}), ("PUT", {"name": "Yours", "price": "1.00"})):
        resp = gateway.request(method, f"/api/v1/items/{item['id']}", json=body, headers=other)
        assert resp.status_code in (403, 404), resp.text
    assert gateway.delete(f"/api/v1/items/{item['id']}", headers=other).status_code in (403, 404)
    after = gateway.get(f"/api/v1/items/{item['id']}").json()
    assert after["name"] == "Mine"
    assert after["price"] == "5.00"


def test_oversized_body_is_413(gateway: httpx.Client) -> None:
    resp = gateway.post(
        "/api/v1/users", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert resp.status_code == 413


def test_burst_is_429_with_retry_after(system_stack: SystemStack, tmp_path: Any) -> None:
    """A gateway of its own with a low limit, so other tests are not throttled."""
    upstreams = {name: system_stack.service_url(name) for name in ("users", "items", "notifier")}
    gw = start_gateway(
        tmp_path,
        port=free_port(),
        internal_port=free_port(),
        upstreams=upstreams,
        settings={"GATEWAY_RATE_AVERAGE": "2", "GATEWAY_RATE_BURST": "4"},
        die_with_parent=True,
    )
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            eventually_sync(lambda: client.get("/api/v1/items").status_code != 404, timeout_s=10)
            codes = [client.get("/api/v1/items") for _ in range(20)]
        limited = [r for r in codes if r.status_code == 429]
        assert limited, [r.status_code for r in codes]
        assert int(limited[0].headers["retry-after"]) >= 1
    finally:
        gw.stop()


@pytest.mark.asyncio
async def test_request_id_through_the_gateway_is_the_events_correlationid(
    system_stack: SystemStack,
) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=system_stack.kafka, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topics.USERS_EVENTS, p) for p in range(3)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp, end in ends.items():
            consumer.seek(tp, end)
        async with httpx.AsyncClient(base_url=system_stack.gateway, timeout=15) as client:
            resp = await client.post(
                "/api/v1/users",
                json={"email": _email(), "name": "Traced", "password": uuid.uuid4().hex},
                headers={"X-Request-ID": request_id},
            )
        assert resp.status_code == 201, resp.text
        assert resp.headers["x-request-id"] == request_id
        user_id = str(resp.json()["id"])
        found: Envelope | None = None
        deadline = time.monotonic() + 30
        while found is None and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for rs in batch.values() for r in rs):
                envelope = Envelope.from_bytes(record.value or b"")
                if envelope.subject == user_id:
                    found = envelope
        assert found is not None, "no UserRegistered on users.events"
        assert found.type == "agora.users.user.registered.v1"
        assert found.correlationid == request_id
    finally:
        await asyncio.wait_for(consumer.stop(), 10)


def test_docs_of_every_service_through_the_gateway(gateway: httpx.Client) -> None:
    for service in ("users", "items", "notifier"):
        docs = gateway.get(f"/{service}/docs")
        assert docs.status_code == 200
        # Relative URLs: openapi.json and the bundled assets resolve under /<service>/.
        assert 'data-openapi-url="openapi.json"' in docs.text
        bundle = gateway.get(f"/{service}/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200
        assert "SwaggerUIBundle" in bundle.text[:2000]
        assert gateway.get(f"/{service}/openapi.json").json()["openapi"].startswith("3.")
        assert gateway.get(f"/{service}/asyncapi.json").json()["asyncapi"] == "3.0.0"
        assert gateway.get(f"/{service}/redoc").status_code == 200


def _status(system_stack: SystemStack) -> list[dict[str, Any]]:
    env = {**os.environ, "AGORA_HOME": str(system_stack.infra.state_dir)}
    result = subprocess.run(
        [sys.executable, "-m", "agora_deploy", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["components"])


def test_status_json_reports_the_whole_stack(system_stack: SystemStack) -> None:
    # Consumer lag is measured periodically: wait until the notifier has reported it once.
    def reported() -> list[dict[str, Any]]:
        found = _status(system_stack)
        return found if "consumer_lag" in found[6] else []

    components = eventually_sync(reported, timeout_s=60)
    names = [c["name"] for c in components]
    assert names == [
        "postgres", "redis", "kafka", "mail", "users", "items", "notifier", "gateway", "storage",
    ]  # fmt: skip
    for comp in components:
        assert comp["state"] == "running"
        assert isinstance(comp["pid"], int)
        assert all(isinstance(v, str | int) for v in comp.values() if v is not comp["pid"])
    by_name = {c["name"]: c for c in components}
    assert by_name["gateway"]["url"] == system_stack.gateway
    # Outbox backlog and consumer lag come from each service's /metrics.
    for name in ("users", "items", "notifier"):
        assert float(by_name[name]["outbox_backlog"]) >= 0
    assert float(by_name["notifier"]["consumer_lag"]) >= 0
