"""The Traefik gateway: routing by path, body limit, rate limit, security headers, docs paths."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from agora_deploy.launchers.gateway import Gateway, start_gateway
from agora_deploy.launchers.process import free_port, port_is_open

# An upstream that answers every request with its own name and the path it saw.
ECHO = textwrap.dedent(
    """
    import json, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    name, port = sys.argv[1], int(sys.argv[2])
    class H(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            body = json.dumps({"service": name, "path": self.path,
                               "prefix": self.headers.get("x-forwarded-prefix")}).encode()
            # A path ending in /unavailable answers like a service whose database is down.
            if self.path.endswith("/unavailable"):
                self.send_response(503)
                self.send_header("retry-after", "7")
            else:
                self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer
        def log_message(self, *args): pass
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def _start_echo(name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", ECHO, name, str(port)])
    deadline = time.monotonic() + 10
    while not port_is_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, str]]:
    procs, urls = [], {}
    try:
        for name in ("users", "items", "notifier", "mail"):
            proc, urls[name] = _start_echo(name)
            procs.append(proc)
        yield urls
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=5)


def _gateway(tmp: Path, upstreams: dict[str, str], **settings: str) -> Gateway:
    return start_gateway(
        tmp,
        port=free_port(),
        internal_port=free_port(),
        upstreams=upstreams,
        settings=settings,
        die_with_parent=True,
    )


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, str]
) -> Iterator[Gateway]:
    gw = _gateway(
        tmp_path_factory.mktemp("gw"),
        upstreams,
        GATEWAY_MAX_BODY_BYTES="1024",
        GATEWAY_CORS_ORIGINS="https://app.example, https://admin.example",
    )
    try:
        yield gw
    finally:
        gw.stop()


def _get(gw: Gateway, path: str, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        resp = httpx.get(gw.url + path, timeout=5, **kwargs)  # type: ignore[arg-type]
        # Traefik may still be loading its dynamic configuration for a moment.
        if resp.status_code != 404 or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/users/me", "users"),
        ("/api/v1/auth/token", "users"),
        ("/.well-known/jwks.json", "users"),
        ("/verify-email?token=a.b.c", "users"),
        ("/reset-password?token=a.b.c", "users"),
        ("/api/v1/items?limit=5", "items"),
        ("/api/v1/items/42", "items"),
        ("/api/v1/notifications/preferences", "notifier"),
    ],
)
def test_routes_by_path(gateway: Gateway, path: str, service: str) -> None:
    resp = _get(gateway, path)
    assert resp.status_code == 200
    assert resp.json() == {"service": service, "path": path, "prefix": None}


@pytest.mark.parametrize("service", ["users", "items", "notifier"])
@pytest.mark.parametrize(
    "doc",
    [
        "/docs",
        "/docs/assets/swagger-ui-bundle.js",
        "/redoc",
        "/redoc/assets/redoc.standalone.js",
        "/openapi.json",
        "/asyncapi.json",
        "/health/ready",
    ],
)
def test_docs_of_each_service(gateway: Gateway, service: str, doc: str) -> None:
    resp = _get(gateway, f"/{service}{doc}")
    assert resp.status_code == 200
    body = resp.json()
    assert body["service"] == service
    assert body["path"] == doc
    assert body["prefix"] == f"/{service}"


@pytest.mark.parametrize("path", ["/", "/events", "/assets/pages.css"])
def test_front_page_and_catalogue_come_from_users(gateway: Gateway, path: str) -> None:
    resp = _get(gateway, path)
    assert resp.status_code == 200
    assert resp.json() == {"service": "users", "path": path, "prefix": None}
    # The page sets its own policy: the gateway's strict API policy does not replace it.
    assert "content-security-policy" not in resp.headers
    assert resp.headers["x-frame-options"] == "DENY"


def test_mail_inbox_is_routed_in_development(gateway: Gateway) -> None:
    resp = _get(gateway, "/mail/api/v1/info")
    assert resp.status_code == 200
    assert resp.json()["service"] == "mail"
    assert resp.json()["path"] == "/api/v1/info"
    # The inbox frames a message's HTML from its own origin.
    assert "x-frame-options" not in resp.headers
    assert _get(gateway, "/mail/").json()["path"] == "/"


def test_mail_inbox_is_not_routed_outside_development(
    tmp_path: Path, upstreams: dict[str, str]
) -> None:
    gw = _gateway(tmp_path, upstreams, AGORA_ENV="production")
    try:
        assert _get(gw, "/api/v1/items").status_code == 200
        assert httpx.get(gw.url + "/mail/api/v1/info", timeout=5).status_code == 404
    finally:
        gw.stop()


def test_unknown_path_is_404(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/api/v2/whatever", timeout=5).status_code == 404


def test_body_limit_413(gateway: Gateway) -> None:
    _get(gateway, "/api/v1/items")
    small = httpx.post(gateway.url + "/api/v1/items", content=b"x" * 100, timeout=5)
    assert small.status_code == 200
    big = httpx.post(gateway.url + "/api/v1/items", content=b"x" * 5000, timeout=5)
    assert big.status_code == 413


def test_security_and_cors_headers(gateway: Gateway) -> None:
    resp = _get(gateway, "/api/v1/items", headers={"Origin": "https://app.example"})
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert resp.headers["access-control-allow-origin"] == "https://app.example"
    other = _get(gateway, "/api/v1/items", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_metrics(gateway: Gateway) -> None:
    _get(gateway, "/api/v1/items")
    metrics = httpx.get(gateway.metrics_url, timeout=5)
    assert metrics.status_code == 200
    assert "traefik_entrypoint_requests_total" in metrics.text


def test_access_log_is_json_without_query_strings(gateway: Gateway) -> None:
    _get(gateway, "/api/v1/items/7?token=SECRET-IN-QUERY")
    log = Path(gateway.process.log_path).with_name("gateway-access.log")
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()] if log.exists() else []
        if any("/api/v1/items/7" in ln for ln in lines):
            break
        time.sleep(0.1)
    entry = json.loads(next(ln for ln in lines if "/api/v1/items/7" in ln))
    assert entry["RequestPath"] == "/api/v1/items/7"
    assert "SECRET-IN-QUERY" not in log.read_text()
    assert entry["DownstreamStatus"] == 200


def test_rate_limit_429_with_retry_after(tmp_path: Path, upstreams: dict[str, str]) -> None:
    gw = _gateway(tmp_path, upstreams, GATEWAY_RATE_AVERAGE="2", GATEWAY_RATE_BURST="3")
    try:
        _get(gw, "/api/v1/items")
        codes = [httpx.get(gw.url + "/api/v1/items", timeout=5) for _ in range(15)]
        limited = [r for r in codes if r.status_code == 429]
        assert limited, [r.status_code for r in codes]
        assert int(limited[0].headers["retry-after"]) >= 1
        assert any(r.status_code == 200 for r in codes)
    finally:
        gw.stop()


@pytest.fixture
def own_items(
    upstreams: dict[str, str],
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """The shared upstreams, with an items upstream of this test's own (to freeze or kill)."""
    proc, url = _start_echo("items")
    try:
        yield proc, {**upstreams, "items": url}
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=5)


def _timed_get(gw: Gateway, path: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.get(gw.url + path, timeout=30)
    return resp, time.monotonic() - started


def test_frozen_upstream_answers_504_within_the_timeout_with_retry_after(
    tmp_path: Path, own_items: tuple[subprocess.Popen[bytes], dict[str, str]]
) -> None:
    proc, urls = own_items
    gw = _gateway(tmp_path, urls, GATEWAY_RESPONSE_TIMEOUT="2s", GATEWAY_RETRY_AFTER_S="3")
    try:
        assert _get(gw, "/api/v1/items").status_code == 200
        proc.send_signal(signal.SIGSTOP)
        resp, took = _timed_get(gw, "/api/v1/items")
        # 504 from the forwarding timeout, or 503 once the health check has marked it down.
        assert resp.status_code in (503, 504), resp.text
        assert took < 4.0, took
        assert resp.headers["retry-after"] == "3"
        # The public middlewares still apply (CORS exposes Retry-After to browsers).
        assert resp.headers["x-content-type-options"] == "nosniff"
        # Other services are not affected.
        assert _get(gw, "/api/v1/users/me").status_code == 200
        proc.send_signal(signal.SIGCONT)
        assert _get(gw, "/api/v1/items").status_code == 200
    finally:
        gw.stop()


def test_stopped_upstream_answers_502_then_503_with_retry_after(
    tmp_path: Path, own_items: tuple[subprocess.Popen[bytes], dict[str, str]]
) -> None:
    proc, urls = own_items
    gw = _gateway(tmp_path, urls, GATEWAY_HEALTH_INTERVAL="500ms")
    try:
        assert _get(gw, "/api/v1/items").status_code == 200
        proc.kill()
        proc.wait(timeout=5)
        seen: set[int] = set()
        deadline = time.monotonic() + 15
        # Connection refused (502) until the health check marks it down, then the fallback (503).
        while 503 not in seen and time.monotonic() < deadline:
            resp, took = _timed_get(gw, "/api/v1/items")
            assert resp.status_code in (502, 503), resp.text
            assert took < 2.0, took
            assert resp.headers["retry-after"] == "5"
            seen.add(resp.status_code)
            time.sleep(0.1)
        assert 503 in seen, seen
    finally:
        gw.stop()


def test_a_services_own_503_passes_through_untouched(gateway: Gateway) -> None:
    resp = _get(gateway, "/api/v1/items/unavailable")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["service"] == "items"


def test_successful_answers_carry_no_retry_after(gateway: Gateway) -> None:
    resp = _get(gateway, "/api/v1/items")
    assert resp.status_code == 200
    assert "retry-after" not in resp.headers
