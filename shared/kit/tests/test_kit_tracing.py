"""Tracing is off by default and then costs no import; on, each process writes its spans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from agora_kit.tracing import wanted

# A service app's whole life in a fresh interpreter: factory, lifespan (engine, Redis, the
# middleware stack), one traced request and one probe, then the OpenTelemetry modules it
# ended up importing.
_SCRIPT = """
import asyncio, json, sys
from agora_kit.app import create_service_app
from agora_kit.settings import ServiceSettings
from agora_kit.testing.app import app_client

async def main():
    app = create_service_app(ServiceSettings(service_name="kit-trace"), title="t", version="0")
    async with app_client(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        response = await client.get("/api/v1/nothing", headers={"X-Request-ID": "rid-42"})
        assert response.status_code == 404
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def run_app(
    create_database: Callable[[str], str], redis_url: str
) -> Callable[[dict[str, str]], list[str]]:
    """Run the script with extra variables; return the OpenTelemetry modules it imported."""
    database = create_database("kit_trace")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGORA_TRACES"))}
    base.update({"DATABASE_URL": database, "REDIS_URL": redis_url, "AGORA_ENV": "test"})

    def run(extra: dict[str, str]) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-c", _SCRIPT],
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
        return modules

    return run


def test_off_by_default_imports_no_sdk(run_app: Callable[[dict[str, str]], list[str]]) -> None:
    modules = run_app({})
    assert not [m for m in modules if m.startswith("opentelemetry.sdk")], modules
    assert not [m for m in modules if m.startswith("opentelemetry.instrumentation")], modules


def test_on_writes_the_request_span_with_its_request_id(
    run_app: Callable[[dict[str, str]], list[str]], tmp_path: Path
) -> None:
    modules = run_app({"AGORA_TRACES_DIR": str(tmp_path)})
    assert "opentelemetry.sdk.trace" in modules
    files = list(tmp_path.glob("kit-trace-*.jsonl"))
    assert len(files) == 1, files
    spans = [json.loads(line) for line in files[0].read_text().splitlines()]
    servers = [s for s in spans if s["kind"] == "SERVER"]
    # The probe is not traced; the request is, tagged with its X-Request-ID.
    assert [s["attributes"].get("agora.request_id") for s in servers] == ["rid-42"], servers
    assert servers[0]["service"] == "kit-trace"
    assert servers[0]["parent_id"] is None
    assert servers[0]["end_ns"] > servers[0]["start_ns"]


def test_services_import_no_sdk_when_off() -> None:
    # What `uvicorn --factory agora_<service>.main:create_app` imports first, in a fresh
    # interpreter: redis-py would load the SDK on its own if the kit did not keep it out.
    script = (
        "import sys, json, agora_items.main, agora_users.main, agora_notifier.main\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('opentelemetry'))))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGORA_TRACES"))}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout)
    assert not [m for m in modules if m.startswith("opentelemetry.sdk")], modules


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"AGORA_TRACES_DIR": "/tmp/traces"}, True),
        ({"AGORA_TRACES_DIR": "/tmp/traces", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_which_variables_turn_tracing_on(env: dict[str, str], on: bool) -> None:
    assert wanted(env) is on
