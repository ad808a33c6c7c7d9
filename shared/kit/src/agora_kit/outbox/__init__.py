"""The transactional outbox, one side of the kit: the table, writing to it, the relay.

A domain write and its outbox rows commit in one transaction (:mod:`.enqueue`, through the
unit of work); the relay (:mod:`.relay`, with :mod:`.publisher`) publishes the rows in
``id`` order and marks them published only after the broker acknowledged them. Enqueueing
also issues ``pg_notify`` on a channel derived from the table name: Postgres delivers it at
commit (never for a rolled-back transaction), which wakes the relay without polling.
:mod:`.retention` scrubs secret fields from a published row at once, and the rest of the
row after the retention period.

The names below are the package's API; the relay is imported from :mod:`.relay` (it pulls in
the Kafka client).
"""

from agora_kit.outbox.enqueue import OutboxMessage, enqueue, enqueue_many, pending_stats
from agora_kit.outbox.retention import (
    REDACTED,
    delete_published,
    redact_secrets,
    run_retention,
    scrub_published,
)
from agora_kit.outbox.table import (
    DEFAULT_TABLE_NAME,
    StoredHeader,
    advisory_lock_key,
    create_outbox_table,
    decode_headers,
    drop_outbox_table,
    encode_headers,
    notify_channel,
    outbox_table,
)

__all__ = [
    "DEFAULT_TABLE_NAME",
    "REDACTED",
    "OutboxMessage",
    "StoredHeader",
    "advisory_lock_key",
    "create_outbox_table",
    "decode_headers",
    "delete_published",
    "drop_outbox_table",
    "encode_headers",
    "enqueue",
    "enqueue_many",
    "notify_channel",
    "outbox_table",
    "pending_stats",
    "redact_secrets",
    "run_retention",
    "scrub_published",
]
