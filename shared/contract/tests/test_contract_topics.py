"""Topic names, sources and per-group retry and dead-letter topics."""

import pytest
from agora_contract import topics


def test_topic_constants_are_the_pinned_names() -> None:
    assert topics.USERS_EVENTS == "users.events"
    assert topics.ITEMS_EVENTS == "items.events"
    assert topics.NOTIFICATIONS_EVENTS == "notifications.events"
    assert topics.NOTIFIER_COMMANDS == "notifier.commands"
    assert topics.DOMAIN_TOPICS == (
        "users.events",
        "items.events",
        "notifications.events",
        "notifier.commands",
    )
    assert topics.NOTIFIER_COMMANDS not in topics.PUBLIC_TOPICS


def test_sources_are_the_pinned_names() -> None:
    assert topics.USERS_SOURCE == "/agora/users"
    assert topics.ITEMS_SOURCE == "/agora/items"
    assert topics.NOTIFIER_SOURCE == "/agora/notifier"


def test_group_topics() -> None:
    assert topics.retry_topic("notifier") == "notifier.retry"
    assert topics.dead_letter_topic("notifier") == "notifier.dead-letter"
    assert topics.dead_letter_topic("items") == "items.dead-letter"


@pytest.mark.parametrize("group", ["", "has space", "slash/group", "x" * 244])
def test_group_topics_refuse_illegal_names(group: str) -> None:
    with pytest.raises(ValueError, match=r"group|longer"):
        topics.retry_topic(group)
    with pytest.raises(ValueError, match=r"group|longer"):
        topics.dead_letter_topic(group)
