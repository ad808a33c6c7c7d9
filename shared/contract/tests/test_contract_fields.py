"""Field types: prices, change sets, e-mail addresses."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from agora_contract import FieldChange, ItemCreated, UserRegistered, changes_between
from pydantic import ValidationError


def _item(price: Decimal | str) -> ItemCreated:
    """Return an ItemCreated with the given price."""
    return ItemCreated.model_validate(
        {
            "item_id": 1,
            "owner_id": 2,
            "name": "Lamp",
            "description": None,
            "price": price,
            "currency": "EUR",
            "tags": [],
            "status": "draft",
        }
    )


@pytest.mark.parametrize(
    ("price", "wire"),
    [
        ("19.90", "19.90"),
        ("0", "0"),
        ("1000000.0001", "1000000.0001"),
        (Decimal("1E+2"), "100"),
        (Decimal("-0.00"), "0.00"),
    ],
)
def test_prices_are_plain_decimal_strings_on_the_wire(price: Decimal | str, wire: str) -> None:
    assert _item(price).model_dump(mode="json")["price"] == wire


@pytest.mark.parametrize("price", [Decimal("-1"), Decimal("Infinity"), Decimal("NaN"), "1,50"])
def test_bad_prices_are_refused(price: Decimal | str) -> None:
    with pytest.raises(ValidationError, match="price"):
        _item(price)


def test_changes_between_reports_only_changed_fields_as_json() -> None:
    before = {"price": Decimal("10.00"), "name": "Lamp", "tags": ["a"], "description": None}
    after = {"price": Decimal("12.50"), "name": "Lamp", "tags": ["a", "b"], "description": "x"}
    assert changes_between(before, after) == {
        "price": FieldChange(old="10.00", new="12.50"),
        "tags": FieldChange(old=["a"], new=["a", "b"]),
        "description": FieldChange(old=None, new="x"),
    }
    assert changes_between(after, after) == {}


def test_changes_between_treats_a_missing_old_value_as_null() -> None:
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    assert changes_between({}, {"seen_at": moment}) == {
        "seen_at": FieldChange(old=None, new="2025-01-01T00:00:00Z")
    }


@pytest.mark.parametrize("email", ["ada@example.org", "a+tag@sub.example.co.uk", "x@localhost"])
def test_plausible_addresses_are_accepted(email: str) -> None:
    registered = UserRegistered(user_id=1, email=email, name="A", registered_at=datetime.now(UTC))
    assert registered.email == email


@pytest.mark.parametrize("email", ["", "ada", "ada@", "@example.org", "a b@example.org", "a@b@c"])
def test_implausible_addresses_are_refused(email: str) -> None:
    with pytest.raises(ValidationError, match="email"):
        UserRegistered(user_id=1, email=email, name="A", registered_at=datetime.now(UTC))
