"""The shared poll helpers: sync and async probes, the returned value, the deadline."""

from __future__ import annotations

import itertools

import pytest
from agora_kit.testing.poll import eventually, eventually_sync


@pytest.mark.asyncio(loop_scope="session")
async def test_eventually_returns_the_first_truthy_value_of_a_sync_or_async_probe() -> None:
    counter = itertools.count()
    assert await eventually(lambda: next(counter) >= 3 and "done", interval_s=0.001) == "done"

    calls = itertools.count()

    async def probe() -> list[int]:
        n = next(calls)
        return [n] if n >= 2 else []

    assert await eventually(probe, interval_s=0.001) == [2]


@pytest.mark.asyncio(loop_scope="session")
async def test_eventually_fails_at_the_deadline_naming_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"the outbox empty not met within 0\.05s .*: 0\)"):
        await eventually(lambda: 0, timeout_s=0.05, interval_s=0.01, what="the outbox empty")


def test_eventually_sync_polls_until_truthy_and_fails_at_the_deadline() -> None:
    counter = itertools.count()
    assert eventually_sync(lambda: next(counter) == 2, interval_s=0.001) is True
    with pytest.raises(AssertionError, match=r"condition not met within 0\.05s"):
        eventually_sync(lambda: None, timeout_s=0.05, interval_s=0.01)
