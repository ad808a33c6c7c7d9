"""Events of the items service, published to `items.events` keyed by item id."""

from typing import Annotated, ClassVar, Literal

from pydantic import StringConstraints

from agora_contract.base import Event
from agora_contract.fields import ChangeSet, Code, CurrencyCode, Id, Price
from agora_contract.topics import ITEMS_EVENTS, ITEMS_SOURCE

DeleteReason = Literal["owner_request", "owner_deleted"]


class _ItemEvent(Event):
    """An event about one item."""

    topic: ClassVar[str] = ITEMS_EVENTS
    source: ClassVar[str] = ITEMS_SOURCE
    key_field: ClassVar[str] = "item_id"

    item_id: Id
    """The item's id."""
    owner_id: Id
    """The id of the user who owns the item."""


class ItemCreated(_ItemEvent):
    """A user listed a new item."""

    event_type: ClassVar[str] = "agora.items.item.created.v1"

    name: Annotated[str, StringConstraints(min_length=1)]
    """The item's name."""
    description: str | None
    """The item's description, null when it has none."""
    price: Price
    """The price as a decimal string, e.g. `"19.90"`."""
    currency: CurrencyCode
    """The ISO 4217 code of the price's currency."""
    tags: list[Annotated[str, StringConstraints(min_length=1)]]
    """The item's tags, possibly empty."""
    status: Code
    """The item's status (e.g. `active`); new statuses may appear, so tolerate unknown ones."""


class ItemUpdated(_ItemEvent):
    """The owner changed fields of an item."""

    event_type: ClassVar[str] = "agora.items.item.updated.v1"

    changes: ChangeSet
    """The changed fields, each with its old and new value (prices as decimal strings)."""


class ItemDeleted(_ItemEvent):
    """An item was deleted, by its owner or because its owner's account was deleted."""

    event_type: ClassVar[str] = "agora.items.item.deleted.v1"

    reason: DeleteReason
    """`owner_request` (the owner deleted it) or `owner_deleted` (the owner's account went)."""
