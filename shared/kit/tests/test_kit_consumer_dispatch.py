"""Unit tests of the dispatcher's policies with fakes: no broker, no database."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from agora_contract import Envelope, UserRegistered
from agora_kit.consumer import (
    ConsumerConfig,
    FailurePolicy,
    HandlerContext,
    HandlerTable,
    TransientError,
    consumer_tables,
)
from agora_kit.consumer.dispatch import Dispatcher
from agora_kit.consumer.metrics import ConsumerMetrics
from agora_kit.consumer.retry import Backoff, Record
from agora_kit.db import make_metadata
from agora_kit.outbox import outbox_table
from prometheus_client import CollectorRegistry
from sqlalchemy.dialects.postgresql.base import PGDialect

METADATA = make_metadata()
TABLES = consumer_tables(METADATA, outbox=outbox_table(METADATA))
CONFIG = ConsumerConfig(
    backoff=Backoff(base_s=0.05, max_s=0.05, jitter=0.0),
    db_backoff=Backoff(base_s=0.01, max_s=0.01, jitter=0.0),
)


class FakeResult:
    """What ``execute`` returns: one generated id."""

    def scalar_one_or_none(self) -> int:
        return 1


class FakeSessions:
    """A session factory whose transactions fail ``failures`` times, then record statements."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.statements: list[Any] = []
        self.attempts = 0

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[FakeSessions]:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise OSError("connection refused")
        yield self

    async def execute(self, statement: Any, *args: Any) -> FakeResult:
        self.statements.append(statement)
        return FakeResult()


class FakeControl:
    """The partition side of the dispatcher: a stop flag, commits and heartbeats counted."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.commits = 0
        self.heartbeats = 0

    async def before_wait(self) -> None:
        self.commits += 1

    def heartbeat(self) -> None:
        self.heartbeats += 1


def _dispatcher(
    sessions: FakeSessions, handlers: HandlerTable, policy: FailurePolicy
) -> tuple[Dispatcher, CollectorRegistry]:
    registry = CollectorRegistry()
    dispatcher = Dispatcher(
        group="g",
        handlers=handlers,
        policy=policy,
        config=CONFIG,
        session_factory=sessions,  # type: ignore[arg-type]
        tables=TABLES,
        metrics=ConsumerMetrics.for_registry(registry),
    )
    return dispatcher, registry


def _event_record() -> Record:
    event = UserRegistered(
        user_id=1, email="a@example.org", name="A", registered_at=datetime.now(UTC)
    )
    return Record(topic="t", partition=0, offset=5, key=b"1", value=Envelope.wrap(event).to_bytes())


def _inserted_tables(sessions: FakeSessions) -> list[str]:
    names = []
    for statement in sessions.statements:
        if isinstance(statement, sa.Insert):
            names.append(statement.table.name)
        elif isinstance(statement, sa.TextClause):  # the outbox's one-statement insert
            found = re.search(r'INSERT INTO "?(\w+)"?', statement.text)
            if found:
                names.append(found.group(1))
    return names


@pytest.mark.asyncio
async def test_a_dead_letter_write_waits_out_a_database_outage() -> None:
    sessions = FakeSessions(failures=3)
    dispatcher, registry = _dispatcher(sessions, HandlerTable(), FailurePolicy.INDEPENDENT)
    control = FakeControl()
    poison = Record(topic="t", partition=0, offset=1, key=None, value=b"{oops")
    assert await dispatcher.handle(poison, control) is True
    assert sessions.attempts == 4
    assert control.heartbeats == 3  # an outage is not a stall
    assert _inserted_tables(sessions) == ["dead_letter", "outbox"]
    labels = {"group": "g", "kind": "malformed"}
    assert registry.get_sample_value("agora_consumer_dead_letters_total", labels) == 1


@pytest.mark.asyncio
async def test_a_released_partition_abandons_the_write_without_committing() -> None:
    sessions = FakeSessions(failures=10**6)
    dispatcher, registry = _dispatcher(sessions, HandlerTable(), FailurePolicy.INDEPENDENT)
    control = FakeControl()
    poison = Record(topic="t", partition=0, offset=1, key=None, value=b"{oops")
    task = asyncio.create_task(dispatcher.handle(poison, control))
    deadline = time.monotonic() + 5
    while sessions.attempts < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    control.stopping.set()
    assert await asyncio.wait_for(task, 5) is False
    assert sessions.statements == []
    labels = {"group": "g", "kind": "malformed"}
    assert registry.get_sample_value("agora_consumer_dead_letters_total", labels) is None


@pytest.mark.asyncio
async def test_independent_transient_failure_is_scheduled_not_retried_in_place() -> None:
    calls: list[int] = []
    handlers = HandlerTable()

    @handlers.on(UserRegistered)
    async def fail(ctx: HandlerContext, envelope: Envelope, event: UserRegistered) -> None:
        calls.append(ctx.attempt)
        raise TransientError("451")

    sessions = FakeSessions()
    dispatcher, _ = _dispatcher(sessions, handlers, FailurePolicy.INDEPENDENT)
    assert await dispatcher.handle(_event_record(), FakeControl()) is True
    assert calls == [1]
    assert _inserted_tables(sessions) == ["consumer_retry"]


@pytest.mark.asyncio
async def test_in_order_retry_commits_first_and_stops_waiting_when_released() -> None:
    calls: list[int] = []
    handlers = HandlerTable()
    control = FakeControl()

    @handlers.on(UserRegistered)
    async def fail(ctx: HandlerContext, envelope: Envelope, event: UserRegistered) -> None:
        calls.append(ctx.attempt)
        if ctx.attempt == 3:
            control.stopping.set()  # revoked while this partition retries
        raise RuntimeError("projection busy")

    sessions = FakeSessions()
    dispatcher, registry = _dispatcher(sessions, handlers, FailurePolicy.IN_ORDER)
    assert await asyncio.wait_for(dispatcher.handle(_event_record(), control), 5) is False
    assert calls == [1, 2, 3]
    assert control.commits == 3  # progress before the record is committed before each wait
    assert sessions.statements == []  # transient in order: never dead-lettered, never scheduled
    labels = {"group": "g", "mode": "in_place"}
    assert registry.get_sample_value("agora_consumer_retries_total", labels) == 3


@pytest.mark.asyncio
async def test_a_handler_timeout_counts_as_a_transient_failure() -> None:
    handlers = HandlerTable()

    @handlers.on(UserRegistered)
    async def hang(ctx: HandlerContext, envelope: Envelope, event: UserRegistered) -> None:
        await asyncio.Event().wait()

    sessions = FakeSessions()
    registry = CollectorRegistry()
    dispatcher = Dispatcher(
        group="g",
        handlers=handlers,
        policy=FailurePolicy.INDEPENDENT,
        config=ConsumerConfig(handler_timeout_s=0.05),
        session_factory=sessions,  # type: ignore[arg-type]
        tables=TABLES,
        metrics=ConsumerMetrics.for_registry(registry),
    )
    assert await asyncio.wait_for(dispatcher.handle(_event_record(), FakeControl()), 5) is True
    (insert,) = [s for s in sessions.statements if isinstance(s, sa.Insert)]
    assert insert.table.name == "consumer_retry"
    params = insert.compile(dialect=PGDialect()).params  # type: ignore[no-untyped-call]
    assert params["last_error"] == "TimeoutError: handler timed out after 0.05 s"
