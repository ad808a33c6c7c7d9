"""Settings of the items service: the kit's shared settings plus ``ITEMS_*`` knobs."""

from __future__ import annotations

from agora_contract.topics import USERS_EVENTS
from agora_kit.settings import ServiceSettings
from pydantic import Field
from pydantic_settings import SettingsConfigDict

#: The consumer group of the users projection; it owns `items.retry` and `items.dead-letter`
#: (docs/interfaces.md, Topics).
DEFAULT_CONSUMER_GROUP = "items"


class ItemsSettings(ServiceSettings):
    """Everything the items service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="ITEMS_", extra="ignore", frozen=True, populate_by_name=True
    )

    service_name: str = "items"
    #: The topic the owner projection follows (tests point it at a topic of their own).
    users_topic: str = Field(default=USERS_EVENTS, min_length=1)
    consumer_group: str = Field(default=DEFAULT_CONSUMER_GROUP, min_length=1)
    #: Run the users-projection consumer in this process (off for a read-only replica).
    consumer_enabled: bool = True
    #: Run the outbox relay in this process (the advisory lock keeps one active anyway).
    relay_enabled: bool = True
    #: Create the topics this service uses at start when they are missing.
    ensure_topics: bool = True
