"""Kafka topic names and CloudEvents sources of the Agora contract."""

import re
from typing import Final

USERS_EVENTS: Final = "users.events"
ITEMS_EVENTS: Final = "items.events"
NOTIFICATIONS_EVENTS: Final = "notifications.events"
# Private, point-to-point mail requests carrying secret tokens; ACL-restricted in production.
NOTIFIER_COMMANDS: Final = "notifier.commands"

DOMAIN_TOPICS: Final = (USERS_EVENTS, ITEMS_EVENTS, NOTIFICATIONS_EVENTS, NOTIFIER_COMMANDS)
PUBLIC_TOPICS: Final = (USERS_EVENTS, ITEMS_EVENTS, NOTIFICATIONS_EVENTS)
DEFAULT_PARTITIONS: Final = 3

USERS_SOURCE: Final = "/agora/users"
ITEMS_SOURCE: Final = "/agora/items"
NOTIFIER_SOURCE: Final = "/agora/notifier"
SOURCES: Final = (USERS_SOURCE, ITEMS_SOURCE, NOTIFIER_SOURCE)

_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_MAX_TOPIC_LENGTH = 249


def _group_topic(group: str, suffix: str) -> str:
    """Return `<group><suffix>` after checking it is a legal Kafka topic name."""
    if not _TOPIC_CHARS.fullmatch(group):
        raise ValueError(f"consumer group {group!r} must be non-empty and use only [A-Za-z0-9._-]")
    topic = f"{group}{suffix}"
    if len(topic) > _MAX_TOPIC_LENGTH:
        raise ValueError(f"topic {topic!r} is longer than {_MAX_TOPIC_LENGTH} characters")
    return topic


def retry_topic(group: str) -> str:
    """Return the retry topic of a consumer group, `<group>.retry`."""
    return _group_topic(group, ".retry")


def dead_letter_topic(group: str) -> str:
    """Return the dead-letter topic of a consumer group, `<group>.dead-letter`."""
    return _group_topic(group, ".dead-letter")
