"""The agora CLI: up --detach, status --json per docs/interfaces.md, a second up, down."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from agora_deploy.launchers.process import pid_alive
from agora_deploy.testing import run_agora

NAMES = {"postgres", "redis", "kafka", "mail", "users", "items", "notifier", "gateway", "storage"}
STATES = {"running", "starting", "restarting", "stopped", "failed", "external"}


AGORA = [sys.executable, "-m", "agora_deploy"]
_agora = run_agora


def _check_shape(doc: dict[str, object]) -> list[dict[str, object]]:
    assert set(doc) == {"components"}
    components = doc["components"]
    assert isinstance(components, list)
    for comp in components:
        assert {"name", "url", "pid", "state"} <= set(comp)
        assert comp["name"] in NAMES
        assert comp["state"] in STATES
        assert isinstance(comp["url"], str)
        assert comp["pid"] is None or isinstance(comp["pid"], int)
        if comp["state"] == "external":
            assert comp["pid"] is None
        extras = {k: v for k, v in comp.items() if k not in {"name", "url", "pid", "state"}}
        assert all(isinstance(v, str | int) for v in extras.values()), "extras are flat values"
    return components


def test_up_status_down(tmp_path: Path) -> None:
    home = tmp_path / "agora"
    started = _agora(home, "up", "--detach", "--services", "none")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = _agora(home, "status", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        components = _check_shape(doc)
        by_name = {c["name"]: c for c in components}
        assert set(by_name) == {"postgres", "redis", "kafka", "mail", "storage"}
        assert by_name["kafka"]["storage"] == "s3"
        assert all(c["state"] == "running" for c in components)
        assert str(by_name["postgres"]["url"]).startswith("postgresql://postgres@127.0.0.1:")
        assert str(by_name["redis"]["url"]).startswith("redis://127.0.0.1:")
        assert str(by_name["kafka"]["url"]).startswith("127.0.0.1:")
        assert str(by_name["mail"]["smtp_url"]).startswith("smtp://127.0.0.1:")
        # stack.json holds the same document; status adds the broker storage's disk use.
        disk = by_name["storage"].pop("disk_bytes")
        assert isinstance(disk, int)
        assert disk > 0
        assert json.loads((home / "stack.json").read_text()) == doc
        mail = httpx.get(f"{by_name['mail']['url']}/api/v1/messages", timeout=5)
        assert mail.status_code == 200
        # The sink keeps its mailbox in the stack's state folder, across restarts.
        info = httpx.get(f"{by_name['mail']['url']}/api/v1/info", timeout=5).json()
        assert info["Database"] == str(home / "mail" / "mailbox.sqlite3")
        # A second `up` while one runs says so and starts nothing.
        again = _agora(home, "up", "--detach", "--services", "none")
        assert again.returncode == 1
        assert "already running" in again.stderr
        pretty = _agora(home, "status")
        assert "postgres" in pretty.stdout
        assert "running" in pretty.stdout
        assert f"mail inbox: {by_name['mail']['url']}/" in pretty.stdout
        inbox = httpx.get(f"{by_name['mail']['url']}/", timeout=5)
        assert inbox.status_code == 200
        assert "Mail inbox" in inbox.text
    finally:
        stopped = _agora(home, "down")
    assert stopped.returncode == 0, stopped.stderr
    pids = [c["pid"] for c in components if isinstance(c["pid"], int)]
    assert pids
    assert not any(pid_alive(p) for p in pids), "agora down left a process running"
    after = json.loads(_agora(home, "status", "--json").stdout)
    assert all(c["state"] == "stopped" for c in _check_shape(after))


def test_status_without_a_stack(tmp_path: Path) -> None:
    result = _agora(tmp_path / "empty", "status", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"components": []}
    assert "not running" in _agora(tmp_path / "empty", "status").stdout


@pytest.mark.parametrize("flag", ["--services=nosuch"])
def test_up_refuses_unknown_services(tmp_path: Path, flag: str) -> None:
    result = _agora(tmp_path / "x", "up", "--detach", flag)
    assert result.returncode == 1
    assert "nosuch" in result.stderr
    _agora(tmp_path / "x", "down")


@pytest.mark.asyncio
async def test_events_tail_prints_cloudevents(kafka_bootstrap: str, tmp_path: Path) -> None:
    from agora_contract import Envelope, UserDeleted
    from agora_kit.kafka import ensure_topics
    from agora_kit.settings import ServiceSettings
    from aiokafka import AIOKafkaProducer

    topic = f"tail.{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap, kafka_enable_idempotence=False
    )
    await ensure_topics(settings, [topic], partitions=1)
    envelope = Envelope.wrap(UserDeleted(user_id=7), subject="7", correlationid="req-1")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, envelope.to_bytes(), key=b"7")
        await producer.send_and_wait(topic, b"not json", key=b"x")
    finally:
        await producer.stop()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "AGORA_HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        *AGORA, "events", "tail", topic, "--from-beginning", "--limit", "2",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, errs = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, errs.decode()
    first, second = (json.loads(line) for line in out.decode().splitlines())
    assert first["id"] == str(envelope.id)
    assert first["type"] == "agora.users.user.deleted.v1"
    assert first["data"] == {"user_id": 7}
    assert first["_kafka"]["key"] == "7"
    assert "not a CloudEvent" in second["error"]
