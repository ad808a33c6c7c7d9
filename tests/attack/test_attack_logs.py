"""Run last (conftest.py): no password or token the suite used is in any of the stack's logs."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from agora_deploy.testing import SystemStack

pytestmark = pytest.mark.attack


def test_no_secret_the_suite_used_is_in_the_logs(
    system_stack: SystemStack,
    gateway_client: httpx.Client,
    secrets: set[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A request the services do log (a refused body is a warning with its request id), so the
    # grep below provably reads the files the services write.
    probe = gateway_client.post(
        "/api/v1/items", content=b"[" * 100, headers={"Content-Type": "application/json"}
    )
    request_id = probe.headers["x-request-id"]
    logs = [p for p in Path(system_stack.infra.state_dir).rglob("*.log") if p.is_file()]
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert request_id in text, [str(p) for p in logs]
    assert len(secrets) >= 10, "the suite recorded too few secrets to mean anything"
    leaked = sorted(s[:12] + "…" for s in secrets if s in text)
    assert leaked == [], f"{len(leaked)} secrets found in {len(logs)} log files"
    with capsys.disabled():
        print(f"\nattack suite: {len(secrets)} secrets, none in {len(logs)} log files")
