"""The partition worker's lanes: keys side by side, each key in order, commits never ahead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pytest
from agora_kit.consumer import ConsumerConfig
from agora_kit.consumer.partition import PartitionWorker
from agora_kit.consumer.retry import Record
from agora_kit.testing.poll import eventually
from aiokafka import TopicPartition

pytestmark = pytest.mark.asyncio(loop_scope="function")

TP = TopicPartition("t", 0)


@dataclass
class Message:
    offset: int
    key: bytes | None
    topic: str = "t"
    partition: int = 0
    value: bytes = b"{}"
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeConsumer:
    def pause(self, tp: TopicPartition) -> None:
        pass

    def resume(self, tp: TopicPartition) -> None:
        pass


class Dispatcher:
    """Handles a record after a short sleep; an offset in ``held`` waits for its release."""

    def __init__(self, *, held: set[int] | None = None, fail: int | None = None) -> None:
        self.held = {offset: asyncio.Event() for offset in held or set()}
        self.fail = fail
        self.started: list[tuple[bytes | None, int]] = []
        self.finished: list[tuple[bytes | None, int]] = []
        self.running: set[int] = set()
        self.running_keys: set[bytes | None] = set()
        self.most = 0

    async def handle(self, record: Record, ctl: Any) -> bool:
        assert record.key not in self.running_keys, "a key ran twice at once"
        self.running.add(record.offset)
        self.running_keys.add(record.key)
        self.started.append((record.key, record.offset))
        self.most = max(self.most, len(self.running))
        try:
            if record.offset == self.fail:
                raise RuntimeError("handler bug")
            gate = self.held.get(record.offset)
            if gate is not None:
                stop = asyncio.ensure_future(ctl.stopping.wait())
                done = asyncio.ensure_future(gate.wait())
                await asyncio.wait({stop, done}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                done.cancel()
                if not gate.is_set():
                    return False  # released mid-record
            await asyncio.sleep(0.005)
            self.finished.append((record.key, record.offset))
            return True
        finally:
            self.running.discard(record.offset)
            self.running_keys.discard(record.key)


class Commits:
    def __init__(self) -> None:
        self.offsets: list[int] = []

    async def __call__(self, offsets: Mapping[TopicPartition, int]) -> bool:
        self.offsets.append(offsets[TP])
        return True


def _worker(dispatcher: Dispatcher, commits: Commits, *, lanes: int) -> PartitionWorker:
    config = ConsumerConfig(max_in_flight=lanes, commit_every=1)
    return PartitionWorker(
        TP,
        consumer=FakeConsumer(),
        dispatcher=cast(Any, dispatcher),
        config=config,
        commit=commits,
    )


async def _until(check: Callable[[], bool]) -> None:
    await eventually(check, timeout_s=5.0, interval_s=0.002)


def _messages(keys: str) -> list[Message]:
    return [Message(offset, key.encode()) for offset, key in enumerate(keys)]


async def _finish(worker: PartitionWorker) -> None:
    worker.stop()
    assert worker.task is not None
    await asyncio.wait_for(worker.task, 5.0)


async def test_keys_run_side_by_side_and_each_key_keeps_its_order() -> None:
    dispatcher, commits = Dispatcher(), Commits()
    worker = _worker(dispatcher, commits, lanes=4)
    worker.start()
    messages = _messages("abcdefabcdefabcdef")
    worker.feed(messages)
    await _until(lambda: len(dispatcher.finished) == len(messages))
    await _until(lambda: commits.offsets[-1:] == [len(messages)])
    await _finish(worker)
    assert dispatcher.most == 4
    for key in b"abcdef":
        offsets = [offset for k, offset in dispatcher.finished if k == bytes([key])]
        assert offsets == sorted(offsets)
        assert len(offsets) == 3
    assert commits.offsets == sorted(commits.offsets)


async def test_one_lane_is_strict_offset_order() -> None:
    dispatcher, commits = Dispatcher(), Commits()
    worker = _worker(dispatcher, commits, lanes=1)
    worker.start()
    worker.feed(_messages("abcabc"))
    await _until(lambda: len(dispatcher.finished) == 6)
    await _finish(worker)
    assert [offset for _, offset in dispatcher.started] == list(range(6))
    assert dispatcher.most == 1


async def test_the_commit_never_passes_an_unfinished_record() -> None:
    dispatcher, commits = Dispatcher(held={1}), Commits()
    worker = _worker(dispatcher, commits, lanes=8)
    worker.start()
    worker.feed(_messages("abcdefg"))
    # Everything but offset 1 finishes; its key's lane holds it, the others ran ahead.
    await _until(lambda: len(dispatcher.finished) == 6)
    await asyncio.sleep(0.05)
    assert max(commits.offsets) == 1
    assert worker.position == 1
    dispatcher.held[1].set()
    await _until(lambda: commits.offsets[-1:] == [7])
    await _finish(worker)


async def test_a_record_of_a_busy_key_waits_for_it_without_taking_a_lane() -> None:
    dispatcher, commits = Dispatcher(held={0}), Commits()
    worker = _worker(dispatcher, commits, lanes=2)
    worker.start()
    worker.feed(_messages("aabc"))
    await _until(lambda: len(dispatcher.finished) == 2)  # b and c, beside the held a
    assert {offset for _, offset in dispatcher.finished} == {2, 3}
    dispatcher.held[0].set()
    await _until(lambda: len(dispatcher.finished) == 4)
    assert [offset for key, offset in dispatcher.finished if key == b"a"] == [0, 1]
    await _finish(worker)


async def test_records_without_a_key_share_one_lane() -> None:
    dispatcher, commits = Dispatcher(), Commits()
    worker = _worker(dispatcher, commits, lanes=4)
    worker.start()
    worker.feed([Message(offset, None) for offset in range(5)])
    await _until(lambda: len(dispatcher.finished) == 5)
    await _finish(worker)
    assert [offset for _, offset in dispatcher.finished] == list(range(5))
    assert dispatcher.most == 1


async def test_a_stop_leaves_the_unfinished_record_for_the_next_owner() -> None:
    dispatcher, commits = Dispatcher(held={2}), Commits()
    worker = _worker(dispatcher, commits, lanes=4)
    worker.start()
    worker.feed(_messages("abcde"))
    await _until(lambda: len(dispatcher.finished) == 4)
    await _finish(worker)
    assert (key_offset := (b"c", 2)) not in dispatcher.finished, key_offset
    assert worker.position == 2
    assert max(commits.offsets) <= 2


async def test_a_handler_bug_ends_the_partition_task_with_it() -> None:
    dispatcher, commits = Dispatcher(fail=1), Commits()
    worker = _worker(dispatcher, commits, lanes=4)
    worker.start()
    worker.feed(_messages("abc"))
    assert worker.task is not None
    with pytest.raises(RuntimeError, match="handler bug"):
        await asyncio.wait_for(worker.task, 5.0)
    assert worker.position is None or worker.position <= 1


async def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        ConsumerConfig(max_in_flight=0)
