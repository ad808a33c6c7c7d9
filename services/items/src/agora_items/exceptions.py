"""Domain errors of the items service; the kit maps each to its problem+json response."""

from __future__ import annotations

from agora_kit.errors import Conflict, Forbidden, NotFound, PreconditionFailed, UnprocessableContent


class ItemNotFound(NotFound):
    """No item has this id (or it was deleted)."""

    slug = "item-not-found"

    def __init__(self, item_id: int) -> None:
        super().__init__(f"Item {item_id} does not exist.")
        self.item_id = item_id


class NotItemOwner(Forbidden):
    """The caller does not own the item it tries to change.

    403, not 404: items are public, so hiding that the item exists would protect nothing.
    """

    slug = "not-item-owner"

    def __init__(self, item_id: int) -> None:
        super().__init__(f"Only the owner of item {item_id} may change or delete it.")
        self.item_id = item_id


class AccountDeleted(Forbidden):
    """The caller's account has been deleted (its token may still be unexpired)."""

    slug = "account-deleted"

    def __init__(self, user_id: int) -> None:
        super().__init__(f"The account of user {user_id} has been deleted.")
        self.user_id = user_id


class StaleItem(PreconditionFailed):
    """``If-Match`` names a version the item no longer has."""

    slug = "stale-item"

    def __init__(self, item_id: int, current_etag: str) -> None:
        super().__init__(
            f"Item {item_id} has changed: its current ETag is {current_etag}; "
            "fetch it again and retry.",
            extra={"current_etag": current_etag},
        )


class PriceNotInCurrency(UnprocessableContent):
    """The price has more decimals than its currency uses (e.g. cents on a JPY price)."""

    slug = "validation-error"

    def __init__(self, price: str, currency: str, decimals: int) -> None:
        loc: list[str | int] = ["body", "price"]
        super().__init__(
            f"A price in {currency} has at most {decimals} decimals; {price} has more.",
            extra={
                "errors": [
                    {
                        "loc": loc,
                        "msg": f"{currency} prices have at most {decimals} decimals",
                        "type": "price_decimals",
                    }
                ]
            },
        )


class PriceConflictsWithItem(Conflict):
    """A PATCH's price (or currency) does not fit the item's stored currency (or price).

    409, not 422: the body is valid on its own (what the schema can say); it is the item's
    current state it conflicts with, e.g. cents sent for an item priced in JPY.
    """

    slug = "price-not-in-currency"

    def __init__(self, item_id: int, price: str, currency: str, decimals: int) -> None:
        super().__init__(
            f"Item {item_id} would be priced {price} {currency}, but a price in {currency} has "
            f"at most {decimals} decimals: send the price and the currency together.",
            extra={"price": price, "currency": currency, "decimals": decimals},
        )
