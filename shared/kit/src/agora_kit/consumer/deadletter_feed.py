"""The headers of a dead letter's feed copy (``<group>.dead-letter``): its origin and why."""

from __future__ import annotations

from agora_kit.consumer.deadletter_table import ErrorKind
from agora_kit.consumer.retry import Record
from agora_kit.outbox import REDACTED as REDACTED

HEADER_ERROR = "x-agora-error"


HEADER_ERROR_KIND = "x-agora-error-kind"


HEADER_GROUP = "x-agora-consumer-group"


HEADER_TOPIC = "x-agora-original-topic"


HEADER_PARTITION = "x-agora-original-partition"


HEADER_OFFSET = "x-agora-original-offset"


HEADER_ATTEMPTS = "x-agora-attempts"


_OUR_HEADERS = frozenset(
    {
        HEADER_ERROR,
        HEADER_ERROR_KIND,
        HEADER_GROUP,
        HEADER_TOPIC,
        HEADER_PARTITION,
        HEADER_OFFSET,
        HEADER_ATTEMPTS,
    }
)


def feed_headers(
    record: Record, *, group: str, error: str, kind: ErrorKind, attempts: int
) -> list[tuple[str, bytes]]:
    """Return the headers of the ``<group>.dead-letter`` copy: the original ones plus ours."""
    # Ours replace same-named originals: a dead letter of a dead letter names its last failure.
    headers = [(k, v) for k, v in record.headers if k not in _OUR_HEADERS]
    headers += [
        (HEADER_ERROR, error.encode("utf-8", errors="replace")),
        (HEADER_ERROR_KIND, kind.value.encode()),
        (HEADER_GROUP, group.encode()),
        (HEADER_TOPIC, record.topic.encode()),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_ATTEMPTS, str(attempts).encode()),
    ]
    return headers
