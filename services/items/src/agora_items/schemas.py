"""Request and response bodies: ItemCreate / ItemReplace / ItemUpdate in, ItemPublic out."""

from __future__ import annotations

import math
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
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from agora_items.currencies import (
    DEFAULT_CURRENCY,
    check_currency,
    minor_units,
    price_fits,
    whole_currencies,
)
from agora_items.models import (
    DESCRIPTION_MAX,
    NAME_MAX,
    PRICE_PRECISION,
    PRICE_SCALE,
    ItemStatus,
)

MAX_TAGS: Final = 20
TAG_MAX: Final = 32
#: A tag starts (after any spaces) with a letter, digit or underscore and may hold `-`, `.`,
#: `+`, `#` and spaces (`c++`, `node.js`, `mid-century`). Letters are ASCII and the Latin
#: ones with diacritics (U+00C0-U+024F). Published as is in the OpenAPI document, with
#: explicit ranges that ECMA, Rust and Python regex engines read alike, and checked as a full
#: match, so what the document allows is exactly what is accepted (then stripped, lower-cased).
_TAG_CHAR = r"A-Za-z0-9_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
TAG_PATTERN: Final = rf"^ *[{_TAG_CHAR}][{_TAG_CHAR} .+#-]*$"
_TAG = re.compile(TAG_PATTERN[1:-1])
#: The JSON Schema of one tag as sent (before it is stripped and lower-cased).
TAG_SCHEMA: Final[dict[str, Any]] = {"type": "string", "maxLength": TAG_MAX, "pattern": TAG_PATTERN}
_CENT = Decimal(1).scaleb(-PRICE_SCALE)


def _quantize(value: Decimal) -> Decimal:
    """Give every price two decimals, so `19.9` and `19.90` are the same value everywhere."""
    return value.quantize(_CENT)


def _format_price(value: Decimal) -> str:
    """Fixed-point notation always (`str(Decimal)` may use an exponent)."""
    return format(value, "f")


#: The largest price a column of PRICE_PRECISION digits, PRICE_SCALE of them decimals, holds.
PRICE_MAX: Final = Decimal(10) ** (PRICE_PRECISION - PRICE_SCALE) - _CENT
#: A positive price as a string: plain decimal notation, at most PRICE_SCALE (2) decimals.
PRICE_STRING_PATTERN: Final = (
    rf"^([1-9][0-9]{{0,{PRICE_PRECISION - PRICE_SCALE - 1}}}(\.[0-9]{{1,2}})?"
    r"|0\.(0[1-9]|[1-9][0-9]?))$"
)
_PRICE_STRING = re.compile(PRICE_STRING_PATTERN[1:-1])
#: What the OpenAPI document says a price is; ``_price_in`` accepts exactly that.
PRICE_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": float(PRICE_MAX),
            "multipleOf": float(_CENT),
        },
        {"type": "string", "pattern": PRICE_STRING_PATTERN},
    ],
    "examples": ["19.90"],
}


def _price_in(value: object) -> object:
    """Accept a price exactly as ``PRICE_SCHEMA`` describes it; return it as a Decimal.

    A number is a multiple of 0.01 when its decimal notation has at most two decimals (what
    schemathesis and Decimal arithmetic say), and a string must match the pattern in full.
    """
    if isinstance(value, bool):
        raise ValueError("a price is a number or a decimal string, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 < value <= PRICE_MAX:
            raise ValueError(f"a price must be above 0 and at most {PRICE_MAX}")
        # The shortest repr is the number as JSON wrote it: 19.9, not 19.899999999999998...
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if amount != amount.quantize(_CENT):
            raise ValueError("a price has at most two decimals")
        return amount
    if isinstance(value, str):
        if not _PRICE_STRING.fullmatch(value):
            raise ValueError(
                "a price string is a positive decimal in plain notation with at most two "
                f"decimals, at most {PRICE_MAX}"
            )
        return Decimal(value)
    return value


assert PRICE_SCALE == 2, "PRICE_STRING_PATTERN spells out two decimals"

Price = Annotated[
    Decimal,
    BeforeValidator(_price_in),
    Field(
        gt=0,
        le=PRICE_MAX,
        max_digits=PRICE_PRECISION,
        decimal_places=PRICE_SCALE,
        allow_inf_nan=False,
    ),
    AfterValidator(_quantize),
    PlainSerializer(_format_price, return_type=str, when_used="json"),
    WithJsonSchema(PRICE_SCHEMA),
]
"""A positive amount with at most two decimals; a JSON number or a decimal string in."""

PriceOut = Annotated[
    Decimal,
    PlainSerializer(_format_price, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "decimal", "examples": ["19.90"]}),
]
"""A price as the API returns it: a decimal string with two decimals."""


def _any_case(code: str) -> str:
    return "".join(f"[{ch}{ch.lower()}]" for ch in code)


#: Every accepted code, in any case, with optional spaces around: the document publishes the
#: list itself, so a schema-valid currency is never refused.
CURRENCY_PATTERN: Final = "^ *(" + "|".join(_any_case(c) for c in sorted(minor_units())) + ") *$"
_CURRENCY = re.compile(CURRENCY_PATTERN[1:-1])


def _currency_in(value: object) -> object:
    """Accept exactly what ``CURRENCY_PATTERN`` matches; return the code in upper case."""
    if not isinstance(value, str):
        return value
    if not _CURRENCY.fullmatch(value):
        raise ValueError(f"{value.strip()!r} is not an ISO 4217 currency code")
    return check_currency(value.strip().upper())


#: The currencies without minor units (JPY, KRW, XAF, ...), in the same spelling.
WHOLE_CURRENCY_PATTERN: Final = (
    "^ *(" + "|".join(_any_case(c) for c in sorted(whole_currencies())) + ") *$"
)
#: The largest whole price (PRICE_MAX without its cents).
WHOLE_PRICE_MAX: Final = int(PRICE_MAX)
#: A price in a currency without minor units: a whole number; as a string, its decimals zero.
WHOLE_PRICE_SCHEMA: Final[dict[str, Any]] = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0, "maximum": WHOLE_PRICE_MAX, "multipleOf": 1},
        {
            "type": "string",
            "pattern": rf"^[1-9][0-9]{{0,{PRICE_PRECISION - PRICE_SCALE - 1}}}(\.00?)?$",
        },
    ],
}

assert all(units == 0 or units >= PRICE_SCALE for units in minor_units().values()), (
    "a currency with 1 decimal needs its own price schema"
)


def _price_fits_currency(schema: dict[str, Any]) -> None:
    """Publish on a body model: with a currency that has no minor units, the price is whole.

    Only currencies without minor units constrain a price: every other one has 2 or more
    decimals, and a price never has more than 2. A PATCH that sends one of the two is
    checked against the item's stored other one, which no schema sees: that is a 409.
    """
    schema["if"] = {
        "properties": {"currency": {"pattern": WHOLE_CURRENCY_PATTERN}},
        "required": ["currency"],
    }
    schema["then"] = {"properties": {"price": WHOLE_PRICE_SCHEMA}}


Currency = Annotated[
    str,
    BeforeValidator(_currency_in),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": CURRENCY_PATTERN,
            "description": "An ISO 4217 currency code (case-insensitive in, upper case out).",
            "examples": ["EUR"],
        }
    ),
]

#: Every character ``str.strip`` removes (``str.isspace``), as explicit ranges that ECMA, Rust
#: and Python regex engines read alike.
_SPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
assert {chr(c) for c in range(0x110000) if chr(c).isspace()} == {
    ch for ch in map(chr, range(0x3001)) if re.fullmatch(f"[{_SPACE}]", ch)
}, "_SPACE must list exactly what str.isspace() accepts"
#: A name holds at least one character that is not white space (searched, not anchored).
NAME_PATTERN: Final = f"[^{_SPACE}]"


def _strip_name(value: str) -> str:
    """Strip the name as ``str.strip`` does; refuse one that is only white space."""
    stripped = value.strip()
    if not stripped:
        raise ValueError("a name needs a character that is not white space")
    return stripped


# The length is checked on the name as sent, as the document's maxLength counts it; the strip
# is Python's (pydantic's own strip is Rust's, which keeps U+001C-U+001F).
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX),
    AfterValidator(_strip_name),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": NAME_MAX,
            "pattern": NAME_PATTERN,
            "examples": ["Walnut writing desk"],
        }
    ),
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
        if not 1 <= len(raw) <= TAG_MAX or len(tag) > TAG_MAX:
            raise ValueError(f"each tag must be 1 to {TAG_MAX} characters long: {raw!r}")
        if not _TAG.fullmatch(raw):
            raise ValueError(
                f"tag {raw!r} must start with a Latin letter, a digit or _ and use only those, "
                "spaces and . + # -"
            )
        seen.setdefault(tag, None)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} distinct tags are allowed, got {len(seen)}")
    return list(seen)


Tags = Annotated[
    # At most MAX_TAGS as sent, duplicates included: the document can say that much exactly.
    list[Annotated[str, StringConstraints(max_length=256), WithJsonSchema(TAG_SCHEMA)]],
    Field(max_length=MAX_TAGS, examples=[["furniture", "vintage"]]),
    AfterValidator(normalise_tags),
]


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
