"""Field types shared by the event models: ids, e-mail addresses, UTC times, prices, changes."""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)

FIELD_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]*$"
_FIELD_NAME = re.compile(FIELD_NAME_PATTERN)
_DECIMAL_PATTERN: Final = r"^\d+(\.\d+)?$"
_DECIMAL = re.compile(_DECIMAL_PATTERN)

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""A database id: a positive integer that fits PostgreSQL's bigint."""

EmailAddress = Annotated[
    str,
    StringConstraints(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"),
    Field(json_schema_extra={"format": "email"}),
]
"""An e-mail address, checked lightly (one `@`, no spaces); the users service checks fully."""

Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=FIELD_NAME_PATTERN)]
"""A short snake_case code such as a status or a notification kind."""

CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 currency code, upper case (`EUR`)."""


def _to_utc(value: datetime) -> datetime:
    """Normalise an aware datetime to UTC."""
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware instant, normalised to UTC and serialised as RFC 3339 (`...Z`)."""


def _parse_price(value: object) -> object:
    """Accept a plain decimal string (`"19.90"`) or a Decimal; refuse floats and exponents."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
            pass
    raise ValueError("price must be a non-negative decimal string such as '19.90'")


def _check_price(value: Decimal) -> Decimal:
    """Refuse non-finite and negative prices and fold -0 into 0."""
    if not value.is_finite() or value < 0:
        raise ValueError("price must be a finite, non-negative decimal")
    return abs(value) if value == 0 else value


Price = Annotated[
    Decimal,
    BeforeValidator(_parse_price),
    AfterValidator(_check_price),
    # Fixed-point notation always: str(Decimal("1E+2")) would give "1E+2".
    PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "decimal", "pattern": _DECIMAL_PATTERN}),
]
"""A non-negative amount, a decimal string on the wire (`"19.90"`, scale kept)."""


class FieldChange(BaseModel):
    """One changed field: its JSON value before and after the change."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)

    old: JsonValue
    """The value before the change (null when it had none)."""
    new: JsonValue
    """The value after the change (null when it was cleared)."""


def _check_field_names(value: dict[str, FieldChange]) -> dict[str, FieldChange]:
    """Refuse field names that are not snake_case identifiers."""
    bad = [name for name in value if not _FIELD_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"changed field names must be snake_case: {', '.join(map(repr, bad))}")
    return value


ChangeSet: TypeAlias = Annotated[
    dict[str, FieldChange],
    Field(min_length=1, json_schema_extra={"propertyNames": {"pattern": FIELD_NAME_PATTERN}}),
    AfterValidator(_check_field_names),
]
"""The changed fields of an update, `{field: {old, new}}`; never empty."""

_JSON: TypeAdapter[Any] = TypeAdapter(Any)


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, FieldChange]:
    """Return the fields of `after` whose JSON value differs from `before` (missing means null)."""
    result: dict[str, FieldChange] = {}
    for name, new_value in after.items():
        old = _JSON.dump_python(before.get(name), mode="json")
        new = _JSON.dump_python(new_value, mode="json")
        if old != new:
            result[name] = FieldChange(old=old, new=new)
    return result
