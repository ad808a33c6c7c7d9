"""Unit tests without I/O: entity tags, body schemas, currencies, the handler table."""

from __future__ import annotations

from decimal import Decimal

import pytest
from agora_contract import UserDeleted, UserEmailChanged, UserRegistered, UserUpdated
from agora_items.config import ItemsSettings
from agora_items.consumer import UserProjection
from agora_items.currencies import check_currency, price_fits
from agora_items.etags import etag_for, if_match_holds, if_none_match_hits
from agora_items.fields import normalise_tags
from agora_items.schemas import ItemCreate, ItemPublic, ItemReplace, ItemUpdate
from pydantic import ValidationError


def test_etag_is_the_quoted_version() -> None:
    assert etag_for(3) == '"3"'


@pytest.mark.parametrize(
    ("header", "holds"),
    [
        (None, True),
        ("*", True),
        ('"3"', True),
        ('"1", "3"', True),
        (' "1" ,"3" ', True),
        ('W/"3"', False),  # If-Match compares strongly
        ('"4"', False),
        ("3", False),  # unquoted: malformed
        ('"3", garbage', False),
        ("", False),  # empty: no tag can match, so the write does not go ahead
    ],
)
def test_if_match(header: str | None, holds: bool) -> None:
    assert if_match_holds(header, '"3"') is holds


@pytest.mark.parametrize(
    ("header", "hit"),
    [
        (None, False),
        ("*", True),
        ('"3"', True),
        ('W/"3"', True),
        ('"2", W/"3"', True),
        ('"2"', False),
        ("junk", False),
    ],
)
def test_if_none_match(header: str | None, hit: bool) -> None:
    assert if_none_match_hits(header, '"3"') is hit


def test_tags_are_lowercased_stripped_and_unique_in_order() -> None:
    assert normalise_tags(["B", " a ", "b", "C++", "node.js", "Ünïcode"]) == [
        "b",
        "a",
        "c++",
        "node.js",
        "ünïcode",
    ]


@pytest.mark.parametrize(
    "tag", ["", "   ", "x" * 33, "-dash-first", "semi;colon", "a/b", "tab\there"]
)
def test_bad_tags_are_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="tag"):
        normalise_tags([tag])


def test_more_than_twenty_distinct_tags_are_refused() -> None:
    assert len(normalise_tags([f"t{i}" for i in range(20)])) == 20
    with pytest.raises(ValueError, match="at most 20"):
        normalise_tags([f"t{i}" for i in range(21)])


def test_create_normalises_price_and_currency() -> None:
    item = ItemCreate.model_validate({"name": " Desk ", "price": "19.9", "currency": " usd "})
    assert (item.name, item.price, item.currency) == ("Desk", Decimal("19.90"), "USD")
    assert item.model_dump(mode="json")["price"] == "19.90"


@pytest.mark.parametrize("price", ["0", "0.00", "-1", "1.001", "1e-3", "inf", True, None, [1]])
def test_bad_prices(price: object) -> None:
    with pytest.raises(ValidationError):
        ItemCreate.model_validate({"name": "x", "price": price})


def test_create_forbids_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="owner_id"):
        ItemCreate.model_validate({"name": "x", "price": "1", "owner_id": 3})


def test_update_tracks_only_sent_fields_and_refuses_nulls() -> None:
    assert ItemUpdate.model_validate({"description": None}).changes() == {"description": None}
    assert ItemUpdate.model_validate({}).changes() == {}
    for field in ("name", "price", "currency", "tags", "status"):
        with pytest.raises(ValidationError, match="not set to null"):
            ItemUpdate.model_validate({field: None})


def test_replace_defaults() -> None:
    item = ItemReplace.model_validate({"name": "x", "price": "2"})
    assert (item.currency, item.tags, item.status, item.description) == ("EUR", [], "active", None)


def test_public_price_is_a_string_with_two_decimals() -> None:
    fields = ItemPublic.model_json_schema()["properties"]
    assert fields["price"]["type"] == "string"


def test_currencies() -> None:
    assert check_currency("EUR") == "EUR"
    for code in ("XYZ", "XAU", "XXX", "eur"):
        with pytest.raises(ValueError, match="ISO 4217"):
            check_currency(code)
    assert price_fits(Decimal("1500.00"), "JPY")
    assert not price_fits(Decimal("1500.50"), "JPY")
    assert price_fits(Decimal("1.25"), "EUR")
    assert price_fits(Decimal("1.25"), "KWD")  # three decimals allowed there


def test_the_projection_handles_every_user_event() -> None:
    handlers = UserProjection(session_factory=None).handlers()  # type: ignore[arg-type]
    assert set(handlers) == {
        UserRegistered.event_type,
        UserUpdated.event_type,
        UserEmailChanged.event_type,
        UserDeleted.event_type,
    }


def test_settings_read_the_items_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ITEMS_USERS_TOPIC", "other.users")
    monkeypatch.setenv("ITEMS_CONSUMER_GROUP", "items-b")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/items")
    settings = ItemsSettings()
    assert (settings.users_topic, settings.consumer_group, settings.service_name) == (
        "other.users",
        "items-b",
        "items",
    )
    assert settings.database_url == "postgresql://u@db:5432/items"
