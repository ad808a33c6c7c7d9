"""The unit of work against real Postgres: the domain row and its outbox row, or neither."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_contract import Envelope, Event
from agora_kit.context import request_id_var, traceparent_var
from agora_kit.db import create_engine, create_session_factory, make_metadata
from agora_kit.outbox import decode_headers, outbox_table
from agora_kit.settings import ServiceSettings
from agora_kit.uow import UnitOfWork, UnitOfWorkError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

TOPIC = "test.uow.widgets"


class WidgetRenamed(Event):
    """A test event: a widget got a new name."""

    event_type: ClassVar[str] = "agora.test.widget.renamed.v1"
    topic: ClassVar[str] = TOPIC
    source: ClassVar[str] = "/agora/test"
    key_field: ClassVar[str] = "widget_id"

    widget_id: int
    name: str


class AbortError(Exception):
    """Raised inside a unit of work to abort it."""


metadata = make_metadata()
widget = sa.Table(
    "widget",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("version", sa.Integer, nullable=False),
)
outbox = outbox_table(metadata)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database holding the widget and outbox tables."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_uow")))
    async with eng.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWork:
    """A unit of work over the test database's outbox."""
    return UnitOfWork(create_session_factory(engine), outbox=outbox)


async def _rows(engine: AsyncEngine, widget_id: int) -> tuple[list[Any], list[Any]]:
    async with engine.connect() as conn:
        widgets = (await conn.execute(sa.select(widget).where(widget.c.id == widget_id))).all()
        events = (
            (await conn.execute(sa.select(outbox).where(outbox.c.key == str(widget_id).encode())))
            .mappings()
            .all()
        )
    return list(widgets), list(events)


def _new_id() -> int:
    return uuid.uuid4().int % 2**62


async def _rename(uow: UnitOfWork, widget_id: int, name: str) -> Envelope:
    await uow.session.execute(sa.insert(widget).values(id=widget_id, name=name, version=1))
    return uow.add_event(WidgetRenamed(widget_id=widget_id, name=name), aggregateversion=1)


@pytest.mark.asyncio(loop_scope="session")
async def test_commit_writes_row_and_outbox_row_with_envelope(
    uow: UnitOfWork, engine: AsyncEngine
) -> None:
    widget_id = _new_id()
    request_token = request_id_var.set("req-123")
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace_token = traceparent_var.set(trace)
    try:
        async with uow:
            envelope = await _rename(uow, widget_id, f"w-{widget_id}")
            assert list(uow.events) == [envelope]
            await uow.commit()
            assert not uow.events
    finally:
        request_id_var.reset(request_token)
        traceparent_var.reset(trace_token)

    widgets, events = await _rows(engine, widget_id)
    assert len(widgets) == 1
    assert len(events) == 1
    row = events[0]
    assert row["topic"] == TOPIC
    assert row["event_id"] == envelope.id
    stored = Envelope.from_bytes(row["value"])
    assert stored == envelope
    assert stored.subject == str(widget_id)
    assert stored.type == "agora.test.widget.renamed.v1"
    assert stored.source == "/agora/test"
    assert stored.correlationid == "req-123"
    assert stored.traceparent == trace
    assert stored.aggregateversion == 1
    assert stored.data == {"widget_id": widget_id, "name": f"w-{widget_id}"}
    headers = dict(decode_headers(row["headers"]))
    assert headers["ce_id"] == str(envelope.id).encode()
    assert headers["ce_type"] == b"agora.test.widget.renamed.v1"
    assert headers["content-type"] == b"application/cloudevents+json"
    assert headers["traceparent"] == trace.encode()
    assert (row["published_at"], row["attempts"]) == (None, 0)


@pytest.mark.asyncio(loop_scope="session")
async def test_exception_rolls_back_row_and_event(uow: UnitOfWork, engine: AsyncEngine) -> None:
    widget_id = _new_id()

    async def abort() -> None:
        async with uow:
            await _rename(uow, widget_id, f"w-{widget_id}")
            await uow.session.flush()
            raise AbortError

    with pytest.raises(AbortError):
        await abort()
    assert await _rows(engine, widget_id) == ([], [])


@pytest.mark.asyncio(loop_scope="session")
async def test_leaving_without_commit_rolls_back(uow: UnitOfWork, engine: AsyncEngine) -> None:
    widget_id = _new_id()
    async with uow:
        await _rename(uow, widget_id, f"w-{widget_id}")
    assert await _rows(engine, widget_id) == ([], [])


@pytest.mark.asyncio(loop_scope="session")
async def test_work_after_commit_needs_its_own_commit(uow: UnitOfWork, engine: AsyncEngine) -> None:
    first, second = _new_id(), _new_id()
    async with uow:
        await _rename(uow, first, f"w-{first}")
        await uow.commit()
        await _rename(uow, second, f"w-{second}")
    assert [len(r) for r in await _rows(engine, first)] == [1, 1]
    assert await _rows(engine, second) == ([], [])


@pytest.mark.asyncio(loop_scope="session")
async def test_failed_commit_writes_nothing_and_uow_is_reusable(
    uow: UnitOfWork, engine: AsyncEngine
) -> None:
    taken, clash = _new_id(), _new_id()
    async with uow:
        await _rename(uow, taken, f"w-{taken}")
        await uow.commit()

    async def clashing() -> None:
        async with uow:
            await _rename(uow, clash, f"w-{taken}")  # the name is unique: the flush fails
            await uow.commit()

    with pytest.raises(IntegrityError):
        await clashing()
    assert await _rows(engine, clash) == ([], [])
    async with uow:
        await _rename(uow, clash, f"w-{clash}")
        await uow.commit()
    assert [len(r) for r in await _rows(engine, clash)] == [1, 1]


@pytest.mark.asyncio(loop_scope="session")
async def test_add_message_writes_raw_row(uow: UnitOfWork, engine: AsyncEngine) -> None:
    key = uuid.uuid4().bytes
    async with uow:
        uow.add_message("test.uow.raw", key, b"\x00raw", [("x-origin", b"\xff")])
        await uow.commit()
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox).where(outbox.c.key == key))).mappings().one()
    assert (row["topic"], row["value"], row["event_id"]) == ("test.uow.raw", b"\x00raw", None)
    assert decode_headers(row["headers"]) == [("x-origin", b"\xff")]


@pytest.mark.asyncio(loop_scope="session")
async def test_rollback_discards_queued_events(uow: UnitOfWork, engine: AsyncEngine) -> None:
    widget_id = _new_id()
    async with uow:
        await _rename(uow, widget_id, f"w-{widget_id}")
        await uow.rollback()
        assert uow.events == ()
        await uow.commit()  # nothing left to write
    assert await _rows(engine, widget_id) == ([], [])


@pytest.mark.asyncio(loop_scope="session")
async def test_misuse_is_refused(uow: UnitOfWork) -> None:
    event = WidgetRenamed(widget_id=1, name="x")
    with pytest.raises(UnitOfWorkError):
        uow.add_event(event)
    with pytest.raises(UnitOfWorkError):
        await uow.commit()
    async with uow:
        with pytest.raises(UnitOfWorkError):
            await uow.__aenter__()
        with pytest.raises(ValueError, match="subject"):
            uow.add_event(event, subject="2")  # the key must be the aggregate id
    with pytest.raises(UnitOfWorkError):
        _ = uow.session
