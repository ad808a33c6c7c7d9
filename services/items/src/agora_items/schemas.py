"""Request and response bodies: ItemCreate / ItemReplace / ItemUpdate in, ItemPublic out."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from agora_items.currencies import (
    DEFAULT_CURRENCY,
    minor_units,
    price_fits,
)
from agora_items.fields import (
    _SPACE,
    Currency,
    Description,
    Name,
    Price,
    PriceOut,
    Tags,
    _price_fits_currency,
)
from agora_items.models import (
    PRICE_SCALE,
    ItemStatus,
)

assert PRICE_SCALE == 2, "PRICE_STRING_PATTERN spells out two decimals"
"""A positive amount with at most two decimals; a JSON number or a decimal string in."""
"""A price as the API returns it: a decimal string with two decimals."""


assert all(units == 0 or units >= PRICE_SCALE for units in minor_units().values()), (
    "a currency with 1 decimal needs its own price schema"
)


assert {chr(c) for c in range(0x110000) if chr(c).isspace()} == {
    ch for ch in map(chr, range(0x3001)) if re.fullmatch(f"[{_SPACE}]", ch)
}, "_SPACE must list exactly what str.isspace() accepts"


class _Input(BaseModel):
    """A request body: unknown fields (``id``, ``owner_id``, ``version``, ...) are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_price_in_currency(price: Decimal | None, info: ValidationInfo) -> Decimal | None:
    """Refuse a price with more decimals than the currency sent with it (the published if/then).

    The currency is declared before the price, so it is in ``info.data`` when it was sent
    and valid. Checked while the body is validated, so such a body is a 422 before anything
    else (an ``If-Match``) is looked at.
    """
    currency = info.data.get("currency")
    if price is not None and isinstance(currency, str) and not price_fits(price, currency):
        raise PydanticCustomError(
            "price_decimals",
            "{currency} prices have at most {decimals} decimals",
            {"currency": currency, "decimals": minor_units()[currency]},
        )
    return price


class ItemCreate(_Input):
    """What a client sends to list an item; the owner is the caller, the status `active`."""

    model_config = ConfigDict(json_schema_extra=_price_fits_currency)

    name: Name
    description: Description | None = None
    currency: Currency = DEFAULT_CURRENCY
    price: Price
    tags: Tags = Field(default_factory=list)

    _price_in_currency = field_validator("price")(_check_price_in_currency)


class ItemReplace(ItemCreate):
    """A full replacement (PUT): omitted optional fields take their defaults."""

    status: ItemStatus = ItemStatus.ACTIVE


def _refuse_null(schema: dict[str, Any]) -> None:
    """Publish the fields ``ItemUpdate`` refuses as null without their null alternative."""
    _price_fits_currency(schema)
    for name in _NOT_NULL:
        field = schema["properties"][name]
        branches = [b for b in field.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            field.update(branches[0])
        elif branches:
            field["anyOf"] = branches


_NOT_NULL: Final = ("name", "price", "currency", "tags", "status")


class ItemUpdate(_Input):
    """A partial update (PATCH): only the fields sent change; `description: null` clears it."""

    model_config = ConfigDict(json_schema_extra=_refuse_null)

    name: Name | None = None
    description: Description | None = None
    currency: Currency | None = None
    price: Price | None = None
    tags: Tags | None = None
    status: ItemStatus | None = None

    _price_in_currency = field_validator("price")(_check_price_in_currency)

    # Validators do not run on defaults, so None here means the client sent an explicit null.
    @field_validator(*_NOT_NULL)
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be left out, but not set to null")
        return value

    def changes(self) -> dict[str, Any]:
        """Return the fields the client sent, with their new values."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ItemPublic(BaseModel):
    """An item as anyone may read it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    owner_id: int
    name: str
    description: str | None
    price: PriceOut
    currency: str
    tags: list[str]
    status: ItemStatus
    version: int
    created_at: datetime
    updated_at: datetime


class SortOrder(StrEnum):
    """List orders: by creation time or price, `-` for descending."""

    NEWEST = "-created_at"
    OLDEST = "created_at"
    PRICE_ASC = "price"
    PRICE_DESC = "-price"


class ItemPage(BaseModel):
    """One page of a list, with the total number of matching items."""

    items: list[ItemPublic]
    total: int
    skip: int
    limit: int
