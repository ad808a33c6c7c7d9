"""The consumer loop: decode, dedupe-friendly dispatch by type, retries and dead letters."""

from agora_kit.consumer.config import ConsumerConfig, FailurePolicy
from agora_kit.consumer.handlers import (
    Handler,
    HandlerContext,
    HandlerTable,
    PermanentError,
    TransientError,
)
from agora_kit.consumer.lag import PartitionLag, StallDetector, fetch_group_lag
from agora_kit.consumer.loop import ConsumerLoop
from agora_kit.consumer.tables import (
    ConsumerTables,
    consumer_tables,
    create_consumer_tables,
    drop_consumer_tables,
)

__all__ = [
    "ConsumerConfig",
    "ConsumerLoop",
    "ConsumerTables",
    "FailurePolicy",
    "Handler",
    "HandlerContext",
    "HandlerTable",
    "PartitionLag",
    "PermanentError",
    "StallDetector",
    "TransientError",
    "consumer_tables",
    "create_consumer_tables",
    "drop_consumer_tables",
    "fetch_group_lag",
]
