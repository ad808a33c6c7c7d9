"""The notifier killed (SIGKILL) mid-stream under uvicorn and restarted loses no email."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from agora_contract import Envelope, UserRegistered
from agora_contract.topics import NOTIFICATIONS_EVENTS
from agora_deploy.launchers.process import ManagedProcess, free_port
from agora_deploy.testing import MailSinkHandle
from agora_kit.kafka import ensure_topics
from agora_kit.settings import ServiceSettings
from agora_kit.testing.db import migrate
from agora_kit.testing.mail import MailApi
from aiokafka import AIOKafkaProducer

PROJECT_DIR = Path(__file__).resolve().parents[1]
EVENTS = 120


def _ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    return check


@pytest.mark.asyncio
async def test_sigkill_mid_stream_loses_no_email(
    create_database: Callable[[str], str],
    redis_url: str,
    kafka_bootstrap: str,
    mail_sink: MailSinkHandle,
    notifier_mail: MailApi,
    tmp_path: Path,
) -> None:
    database = create_database("notifier_kill")
    await migrate(database, PROJECT_DIR)
    suffix = uuid.uuid4().hex[:8]
    users_topic = f"test.notifier-kill.users-events.{suffix}"
    env = {
        **os.environ,
        "AGORA_ENV": "test",
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_ENABLE_IDEMPOTENCE": "false",
        "SMTP_URL": mail_sink.smtp_url,
        "JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
        "PUBLIC_URL": "http://gateway.test",
        "NOTIFIER_USERS_TOPIC": users_topic,
        "NOTIFIER_ITEMS_TOPIC": f"test.notifier-kill.items-events.{suffix}",
        "NOTIFIER_COMMANDS_TOPIC": f"test.notifier-kill.commands.{suffix}",
        "NOTIFIER_CONSUMER_GROUP": f"notifier-kill-{suffix}",
        # A killed member's partitions move once its session times out: keep that short.
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "CONSUMER_RETRY_BASE_DELAY_S": "0.2",
        "CONSUMER_RETRY_MAX_DELAY_S": "1",
        # The killed attempt's lease must run out quickly for its resend.
        "NOTIFIER_SEND_LEASE_S": "2",
        "LOG_JSON": "false",
        "LOG_LEVEL": "WARNING",
    }
    settings = ServiceSettings(
        kafka_bootstrap_servers=kafka_bootstrap, kafka_enable_idempotence=False
    )
    await ensure_topics(
        settings,
        [
            users_topic,
            env["NOTIFIER_ITEMS_TOPIC"],
            env["NOTIFIER_COMMANDS_TOPIC"],
            NOTIFICATIONS_EVENTS,
        ],
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", "agora_notifier.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip

    def process(name: str) -> ManagedProcess:
        return ManagedProcess(
            name, argv, tmp_path / f"{name}.log", env=env, cwd=PROJECT_DIR, die_with_parent=True
        )

    users = [
        (i + 1 + (uuid.uuid4().int % 10**12) * 100, f"k-{suffix}-{i}@example.test")
        for i in range(EVENTS)
    ]
    first = process("notifier-1")
    second = process("notifier-2")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await asyncio.wait_for(producer.start(), 30)
    try:
        first.start()
        await asyncio.to_thread(first.wait_healthy, _ready(url), 60)
        for user_id, email in users:
            envelope = Envelope.wrap(
                UserRegistered(
                    user_id=user_id, email=email, name="K", registered_at=datetime.now(UTC)
                )
            )
            await producer.send(
                users_topic,
                value=envelope.to_bytes(),
                key=envelope.kafka_key(),
                headers=envelope.kafka_headers(),
            )
        await asyncio.wait_for(producer.flush(), 30)
        # Kill as soon as mail starts flowing: some sent, some in flight, most not yet read.
        await notifier_mail.wait_for(users[0][1], timeout_s=60)
        os.killpg(first.pid or 0, signal.SIGKILL)
        await asyncio.to_thread(first.stop, 5)
        delivered_before = 0
        for _, email in users:
            delivered_before += bool(await notifier_mail.to(email))
        assert delivered_before < EVENTS, "everything went out before the kill: nothing tested"

        second.start()
        await asyncio.to_thread(second.wait_healthy, _ready(url), 60)
        for _, email in users:
            mails = await notifier_mail.wait_for(email, timeout_s=90)
            # A duplicate is possible only in the documented window, and carries the same id.
            assert len({m.message_id for m in mails}) == 1, email
    finally:
        await asyncio.to_thread(first.stop, 5)
        await asyncio.to_thread(second.stop, 10)
        await asyncio.wait_for(producer.stop(), 30)
