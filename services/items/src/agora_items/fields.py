"""The item fields' types: price, currency, name, description, tags (checked and published)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from agora_items.currencies import (
    check_currency,
    minor_units,
    whole_currencies,
)
from agora_items.models import (
    DESCRIPTION_MAX,
    NAME_MAX,
    PRICE_PRECISION,
    PRICE_SCALE,
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


PriceOut = Annotated[
    Decimal,
    PlainSerializer(_format_price, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "decimal", "examples": ["19.90"]}),
]


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
