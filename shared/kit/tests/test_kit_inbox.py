"""The inbox against real Postgres: a claim commits with the effect, once per event and group."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
import sqlalchemy as sa
from agora_kit.consumer.inbox import claim, inbox_table, is_processed, purge
from agora_kit.db import create_engine, create_session_factory, make_metadata
from agora_kit.settings import ServiceSettings
from sqlalchemy.ext.asyncio import AsyncEngine

METADATA = make_metadata()
INBOX = inbox_table(METADATA)
EFFECT = sa.Table(
    "effect",
    METADATA,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def engine(create_database: Callable[[str], str]) -> AsyncIterator[AsyncEngine]:
    """An engine on this module's database, with the inbox and an effect table."""
    eng = create_engine(ServiceSettings(database_url=create_database("kit_inbox")))
    async with eng.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()


async def _apply(engine: AsyncEngine, group: str, event_id: uuid.UUID) -> bool:
    """A handler's transaction: claim, then the effect; return whether it applied."""
    async with create_session_factory(engine).begin() as session:
        if not await claim(session, INBOX, group=group, event_id=event_id):
            return False
        await session.execute(sa.insert(EFFECT).values(event_id=event_id))
        return True


async def _effects(engine: AsyncEngine, event_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(EFFECT.c.event_id == event_id)
        return int((await conn.execute(query)).scalar_one())


@pytest.mark.asyncio(loop_scope="session")
async def test_a_redelivered_event_changes_the_database_once(engine: AsyncEngine) -> None:
    event_id = uuid.uuid4()
    assert await _apply(engine, "g1", event_id) is True
    assert await _apply(engine, "g1", event_id) is False
    assert await _effects(engine, event_id) == 1
    # Another group has its own inbox entry for the same event.
    assert await _apply(engine, "g2", event_id) is True
    async with engine.connect() as conn:
        assert await is_processed(conn, INBOX, group="g1", event_id=event_id)
        assert not await is_processed(conn, INBOX, group="g3", event_id=event_id)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_rolled_back_effect_leaves_the_event_unclaimed(engine: AsyncEngine) -> None:
    event_id = uuid.uuid4()
    sessions = create_session_factory(engine)

    class BoomError(Exception):
        pass

    async def fail_after_effect() -> None:
        async with sessions.begin() as session:
            assert await claim(session, INBOX, group="g", event_id=event_id)
            await session.execute(sa.insert(EFFECT).values(event_id=event_id))
            raise BoomError

    with pytest.raises(BoomError):
        await fail_after_effect()
    assert await _effects(engine, event_id) == 0
    assert await _apply(engine, "g", event_id) is True
    assert await _effects(engine, event_id) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_concurrent_claims_apply_once(engine: AsyncEngine) -> None:
    event_id = uuid.uuid4()
    sessions = create_session_factory(engine)
    async with sessions.begin() as first:
        assert await claim(first, INBOX, group="g", event_id=event_id)
        # The second claim waits on the first transaction's row lock ...
        second = asyncio.create_task(_apply(engine, "g", event_id))
        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                waiting = (
                    await conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND datname = current_database()"
                        )
                    )
                ).scalar_one()
            if waiting:
                break
            assert time.monotonic() < deadline, "the second claim never waited on the first"
            assert not second.done()
            await asyncio.sleep(0.05)
        await first.execute(sa.insert(EFFECT).values(event_id=event_id))
    # ... and sees the conflict once the first commits.
    assert await asyncio.wait_for(second, 10) is False
    assert await _effects(engine, event_id) == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_purge_deletes_only_old_entries(engine: AsyncEngine) -> None:
    old, fresh = uuid.uuid4(), uuid.uuid4()
    group = f"purge-{uuid.uuid4().hex[:6]}"
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(INBOX).values(
                consumer_group=group,
                event_id=old,
                processed_at=datetime.now(UTC) - timedelta(days=40),
            )
        )
        assert await claim(conn, INBOX, group=group, event_id=fresh)
    async with engine.begin() as conn:
        deleted = await purge(conn, INBOX, before=datetime.now(UTC) - timedelta(days=30))
    assert deleted >= 1
    async with engine.connect() as conn:
        assert not await is_processed(conn, INBOX, group=group, event_id=old)
        assert await is_processed(conn, INBOX, group=group, event_id=fresh)
