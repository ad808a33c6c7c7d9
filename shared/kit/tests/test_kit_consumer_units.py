"""Unit tests of the consumer kit's pure parts: parsing, handler table, backoff, stall detector."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from agora_contract import Envelope, Event, ItemDeleted, UserDeleted, UserRegistered
from agora_kit.consumer import (
    ConsumerConfig,
    HandlerContext,
    HandlerTable,
    PermanentError,
    StallDetector,
)
from agora_kit.consumer.deadletter_feed import feed_headers
from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.handlers import Decoded, Poison, parse, type_label
from agora_kit.consumer.lag import partition_lag
from agora_kit.consumer.retry import Backoff, Record
from agora_kit.settings import ServiceSettings
from aiokafka import TopicPartition


def _record(value: bytes | None, *, offset: int = 0) -> Record:
    return Record(topic="t", partition=0, offset=offset, key=b"k", value=value)


def _registered(user_id: int = 7) -> Envelope:
    event = UserRegistered(
        user_id=user_id, email="ada@example.org", name="Ada", registered_at=datetime.now(UTC)
    )
    return Envelope.wrap(event)


async def _noop(ctx: HandlerContext, envelope: Envelope, event: Event) -> None:
    return None


def test_parse_valid_handled_event_decodes_the_model() -> None:
    envelope = _registered()
    parsed = parse(_record(envelope.to_bytes()), {UserRegistered.event_type: _noop})
    assert isinstance(parsed, Decoded)
    assert isinstance(parsed.event, UserRegistered)
    assert parsed.envelope.id == envelope.id
    assert parsed.handler is _noop


def test_parse_known_but_unhandled_type_is_skipped_or_dead_lettered() -> None:
    raw = _registered().to_bytes()
    skipped = parse(_record(raw), {})
    assert isinstance(skipped, Decoded)
    assert skipped.handler is None
    poison = parse(_record(raw), {}, dead_letter_unhandled=True)
    assert isinstance(poison, Poison)
    assert poison.kind is ErrorKind.UNKNOWN_TYPE


@pytest.mark.parametrize("value", [b"{not json", b"", None, b'{"id": "x"}', b"[1,2]"])
def test_parse_malformed_values(value: bytes | None) -> None:
    parsed = parse(_record(value), {UserRegistered.event_type: _noop})
    assert isinstance(parsed, Poison)
    assert parsed.kind is ErrorKind.MALFORMED
    assert parsed.event_id is None


def test_parse_unknown_type_keeps_id_and_type() -> None:
    body = _registered().to_dict() | {"type": "agora.users.user.teleported.v1"}
    parsed = parse(_record(json.dumps(body).encode()), {UserRegistered.event_type: _noop})
    assert isinstance(parsed, Poison)
    assert parsed.kind is ErrorKind.UNKNOWN_TYPE
    assert parsed.event_type == "agora.users.user.teleported.v1"
    assert parsed.event_id == uuid.UUID(body["id"])


def test_parse_schema_invalid_data() -> None:
    body = _registered().to_dict()
    body["data"] = {"user_id": "not-a-number"}
    parsed = parse(_record(json.dumps(body).encode()), {UserRegistered.event_type: _noop})
    assert isinstance(parsed, Poison)
    assert parsed.kind is ErrorKind.INVALID
    assert parsed.event_type == UserRegistered.event_type


def test_type_label_bounds_cardinality() -> None:
    assert type_label(UserRegistered.event_type) == UserRegistered.event_type
    assert type_label("agora.x.y.z.v9") == "<unknown>"
    assert type_label(None) == "<malformed>"


@pytest.mark.asyncio
async def test_handler_table_types_and_refuses_duplicates() -> None:
    table = HandlerTable()
    seen: list[int] = []

    @table.on(UserDeleted)
    async def on_deleted(ctx: HandlerContext, envelope: Envelope, event: UserDeleted) -> None:
        seen.append(event.user_id)

    assert list(table) == [UserDeleted.event_type]
    assert len(table) == 1
    with pytest.raises(ValueError, match="already registered"):
        table.add(UserDeleted, on_deleted)
    ctx = HandlerContext(group="g", record=_record(b"x"))
    envelope = Envelope.wrap(UserDeleted(user_id=3))
    await table[UserDeleted.event_type](ctx, envelope, UserDeleted(user_id=3))
    assert seen == [3]
    wrong = ItemDeleted(item_id=1, owner_id=2, reason="owner_request")
    with pytest.raises(PermanentError):
        await table[UserDeleted.event_type](ctx, envelope, wrong)


def test_backoff_grows_caps_and_jitters_within_bounds() -> None:
    backoff = Backoff(base_s=1.0, max_s=10.0, multiplier=2.0, jitter=0.1)
    for attempt, expected in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (500, 10.0)]:
        delay = backoff.delay(attempt)
        assert expected * 0.9 <= delay <= expected * 1.1
    exact = Backoff(base_s=0.5, max_s=2.0, jitter=0.0)
    assert [exact.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base_s=2.0, max_s=1.0)


def test_consumer_config_refuses_a_poll_interval_below_the_handler_timeout() -> None:
    with pytest.raises(ValueError, match="max_poll_interval_ms"):
        ConsumerConfig(handler_timeout_s=400, max_poll_interval_ms=300_000)
    with pytest.raises(ValueError, match="heartbeat"):
        ConsumerConfig(session_timeout_ms=6000, heartbeat_interval_ms=3000)
    config = ConsumerConfig(handler_timeout_s=20)
    assert config.retry_lease_s > config.handler_timeout_s


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stall_detector_flags_lag_without_progress_only_after_the_timeout() -> None:
    clock = FakeClock()
    detector = StallDetector(30.0, clock=clock)
    tp, other = TopicPartition("t", 0), TopicPartition("t", 1)
    # Idle for long (old progress), then a message arrives: the clock starts now.
    progress = {tp: clock.now - 3600, other: clock.now}
    assert detector.check({tp: 1, other: 0}, progress) == frozenset()
    clock.now += 29
    assert detector.check({tp: 1, other: 0}, progress) == frozenset()
    clock.now += 2
    assert detector.check({tp: 1, other: 0}, progress) == {tp}
    # Progress (a record done, or an attempt made) clears it.
    progress[tp] = clock.now
    assert detector.check({tp: 3, other: 0}, progress) == frozenset()
    # Caught up: forgotten; a later lag starts a fresh window.
    clock.now += 100
    assert detector.check({tp: 0, other: 0}, progress) == frozenset()
    assert detector.check({tp: 2, other: 0}, progress) == frozenset()
    clock.now += 31
    assert detector.check({tp: 2, other: 0}, progress) == {tp}


def test_partition_lag_uses_beginning_when_nothing_committed() -> None:
    tp = TopicPartition("t", 2)
    assert partition_lag(tp, 10, None, beginning=4).lag == 6
    assert partition_lag(tp, 10, 10).lag == 0
    assert partition_lag(tp, 10, 12).lag == 0


def test_feed_headers_keep_originals_and_replace_ours() -> None:
    record = Record(
        topic="users.events",
        partition=2,
        offset=41,
        key=b"7",
        value=b"{}",
        headers=(("ce_id", b"abc"), ("x-agora-error", b"older failure")),
    )
    headers = feed_headers(record, group="g1", error="boom", kind=ErrorKind.PERMANENT, attempts=3)
    as_dict = dict(headers)
    assert as_dict["ce_id"] == b"abc"
    assert [v for k, v in headers if k == "x-agora-error"] == [b"boom"]
    assert as_dict["x-agora-original-topic"] == b"users.events"
    assert as_dict["x-agora-original-partition"] == b"2"
    assert as_dict["x-agora-original-offset"] == b"41"
    assert as_dict["x-agora-error-kind"] == b"permanent"


def test_config_follows_settings() -> None:
    settings = ServiceSettings(consumer_fetch_max_wait_ms=40, consumer_max_attempts=4)
    config = ConsumerConfig.from_settings(settings, max_poll_records=50)
    assert (config.fetch_max_wait_ms, config.max_attempts) == (40, 4)
    assert config.max_poll_records == 50
    assert ConsumerConfig.from_settings(ServiceSettings()).fetch_max_wait_ms == 25
