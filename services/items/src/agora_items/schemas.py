"""Request and response bodies: ItemCreate / ItemReplace / ItemUpdate in, ItemPublic out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from agora_items.currencies import DEFAULT_CURRENCY, check_currency
from agora_items.models import (
    DESCRIPTION_MAX,
    NAME_MAX,
    PRICE_PRECISION,
    PRICE_SCALE,
    ItemStatus,
)

MAX_TAGS: Final = 20
TAG_MAX: Final = 32
#: A tag starts with a letter, digit or underscore and may hold `-`, `.`, `+`, `#` and spaces
#: (`c++`, `node.js`, `mid-century`); Unicode letters count.
_TAG = re.compile(r"[^\W][\w .+#-]*")
_CENT = Decimal(1).scaleb(-PRICE_SCALE)


def _quantize(value: Decimal) -> Decimal:
    """Give every price two decimals, so `19.9` and `19.90` are the same value everywhere."""
    return value.quantize(_CENT)


def _format_price(value: Decimal) -> str:
    """Fixed-point notation always (`str(Decimal)` may use an exponent)."""
    return format(value, "f")


Price = Annotated[
    Decimal,
    Field(
        gt=0,
        max_digits=PRICE_PRECISION,
        decimal_places=PRICE_SCALE,
        allow_inf_nan=False,
        examples=["19.90"],
    ),
    AfterValidator(_quantize),
    PlainSerializer(_format_price, return_type=str, when_used="json"),
]
"""A positive amount with at most two decimals; a JSON number or a decimal string in."""

PriceOut = Annotated[
    Decimal,
    PlainSerializer(_format_price, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "decimal", "examples": ["19.90"]}),
]
"""A price as the API returns it: a decimal string with two decimals."""


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


Currency = Annotated[
    str,
    BeforeValidator(_upper),
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(check_currency),
    Field(
        description="An ISO 4217 currency code (case-insensitive in, upper case out).",
        examples=["EUR"],
    ),
]

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX),
    Field(examples=["Walnut writing desk"]),
]
Description = Annotated[
    str,
    StringConstraints(max_length=DESCRIPTION_MAX),
    Field(examples=["Solid walnut, 1960s, light wear on the top."]),
]


def normalise_tags(value: Sequence[str]) -> list[str]:
    """Strip, lower-case and de-duplicate tags (first spelling wins), then check the count."""
    seen: dict[str, None] = {}
    for raw in value:
        tag = raw.strip().lower()
        if not 1 <= len(tag) <= TAG_MAX:
            raise ValueError(f"each tag must be 1 to {TAG_MAX} characters long: {raw!r}")
        if not _TAG.fullmatch(tag):
            raise ValueError(
                f"tag {raw!r} must start with a letter or digit and use only letters, digits, "
                "spaces and _ . + # -"
            )
        seen.setdefault(tag, None)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} distinct tags are allowed, got {len(seen)}")
    return list(seen)


Tags = Annotated[
    # The raw bound only stops absurd lists early; the real limit applies after de-duplication.
    list[Annotated[str, StringConstraints(max_length=256)]],
    Field(max_length=10 * MAX_TAGS, examples=[["furniture", "vintage"]]),
    AfterValidator(normalise_tags),
]


class _Input(BaseModel):
    """A request body: unknown fields (``id``, ``owner_id``, ``version``, ...) are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemCreate(_Input):
    """What a client sends to list an item; the owner is the caller, the status `active`."""

    name: Name
    description: Description | None = None
    price: Price
    currency: Currency = DEFAULT_CURRENCY
    tags: Tags = Field(default_factory=list)


class ItemReplace(ItemCreate):
    """A full replacement (PUT): omitted optional fields take their defaults."""

    status: ItemStatus = ItemStatus.ACTIVE


class ItemUpdate(_Input):
    """A partial update (PATCH): only the fields sent change; `description: null` clears it."""

    name: Name | None = None
    description: Description | None = None
    price: Price | None = None
    currency: Currency | None = None
    tags: Tags | None = None
    status: ItemStatus | None = None

    # Validators do not run on defaults, so None here means the client sent an explicit null.
    @field_validator("name", "price", "currency", "tags", "status")
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
