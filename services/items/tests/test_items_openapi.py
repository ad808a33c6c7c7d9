"""The OpenAPI document tells the truth (docs/security.md, finding 8): what it allows passes, errors
are problem+json, and the statuses the service sends are documented."""

from __future__ import annotations

import re
from typing import Any

import pytest
from agora_items.testing import ItemsHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"
PROBLEM = "application/problem+json"


async def _document(items_svc: ItemsHarness) -> dict[str, Any]:
    response = await items_svc.client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def _query_schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    params = doc["paths"][API]["get"]["parameters"]
    schema: dict[str, Any] = next(p for p in params if p["name"] == name)["schema"]
    return schema


async def test_every_error_is_documented_as_problem_json(items_svc: ItemsHarness) -> None:
    doc = await _document(items_svc)
    for path_item in doc["paths"].values():
        for operation in path_item.values():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == [PROBLEM], (code, operation["summary"])
    patch = doc["paths"][f"{API}/{{item_id}}"]["patch"]["responses"]
    assert {"400", "401", "403", "404", "412", "422", "503"} <= patch.keys()
    dead_letters = doc["paths"][f"{API}/dead-letters"]["get"]["responses"]
    assert {"401", "403"} <= dead_letters.keys()


async def test_the_dead_letter_collection_is_not_taken_for_an_item(
    items_svc: ItemsHarness,
) -> None:
    owner = items_svc.new_user()
    for method in ("PUT", "PATCH", "DELETE"):
        response = await items_svc.client.request(
            method, f"{API}/dead-letters", json={}, headers=items_svc.auth(owner)
        )
        assert response.status_code == 405, (method, response.text)
        assert response.headers["allow"] == "GET"
        assert response.headers["content-type"] == PROBLEM
    both = await items_svc.client.delete(API, headers=items_svc.auth(owner))
    assert both.status_code == 405
    assert both.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        *[("0", True), ("19.9", True), ("19.90", True), ("1.005", False), ("1e2", False)],
        *[(" 5", False), ("-1", False), ("12345678901", False)],
    ],
)
async def test_price_bounds_accept_exactly_what_the_pattern_allows(
    items_svc: ItemsHarness, value: str, ok: bool
) -> None:
    pattern = _query_schema(await _document(items_svc), "min_price")["anyOf"][0]["pattern"]
    assert bool(re.fullmatch(pattern[1:-1], value)) is ok
    response = await items_svc.client.get(API, params={"min_price": value})
    assert response.status_code == (200 if ok else 422), response.text


@pytest.mark.parametrize(
    ("tag", "ok"),
    [
        *[("c++", True), (" Mid-Century ", True), ("Ünïcode", True), ("", False), ("-x", False)],
        *[("a/b", False), ("x" * 33, False)],
    ],
)
async def test_tags_accept_exactly_what_the_pattern_allows(
    items_svc: ItemsHarness, tag: str, ok: bool
) -> None:
    schema = _query_schema(await _document(items_svc), "tag")["anyOf"][0]["items"]
    fits = len(tag) <= schema["maxLength"] and re.fullmatch(schema["pattern"][1:-1], tag)
    assert bool(fits) is ok
    response = await items_svc.client.get(API, params={"tag": tag})
    assert response.status_code == (200 if ok else 422), response.text


async def test_fields_patch_refuses_as_null_are_not_published_as_nullable(
    items_svc: ItemsHarness,
) -> None:
    doc = await _document(items_svc)
    fields = doc["components"]["schemas"]["ItemUpdate"]["properties"]
    for name in ("name", "price", "currency", "tags", "status"):
        assert {"type": "null"} not in fields[name].get("anyOf", []), name
    assert {"type": "null"} in fields["description"]["anyOf"]  # null clears a description

    owner = items_svc.new_user()
    item = await items_svc.create(owner, name="Lamp", price="10")
    response = await items_svc.client.patch(
        f"{API}/{item['id']}", json={"status": None}, headers=items_svc.auth(owner)
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("price", "ok"),
    [
        *[(19.9, True), (0.57, True), (9999999999.98, True), ("0.01", True), (0.005, False)],
        *[("", False), ("0", False), ("1e2", False), (1e11, False), (True, False)],
    ],
)
async def test_body_prices_accept_exactly_what_the_schema_allows(
    items_svc: ItemsHarness, price: object, ok: bool
) -> None:
    owner = items_svc.new_user()
    response = await items_svc.client.post(
        API, json={"name": "Lamp", "price": price}, headers=items_svc.auth(owner)
    )
    assert response.status_code == (201 if ok else 422), (price, response.text)


@pytest.mark.parametrize(
    ("currency", "price", "ok"),
    [
        *[("JPY", "1500", True), (" jpy", 1500, True), ("JPY", "1500.00", True)],
        *[("JPY", 1500.0, True), ("JPY", "1500.5", False), ("JPY", 1500.5, False)],
        *[("XAF", "14.37", False), ("EUR", "14.37", True), ("KWD", 1.25, True)],
    ],
)
async def test_a_currency_without_minor_units_takes_whole_prices_as_published(
    items_svc: ItemsHarness, currency: str, price: object, ok: bool
) -> None:
    schemas = (await _document(items_svc))["components"]["schemas"]
    rule = {key: schemas["ItemCreate"][key] for key in ("if", "then")}
    # POST, PUT and PATCH bodies publish the same rule.
    assert rule == {key: schemas["ItemReplace"][key] for key in ("if", "then")}
    assert rule == {key: schemas["ItemUpdate"][key] for key in ("if", "then")}
    currency_pattern = rule["if"]["properties"]["currency"]["pattern"]
    whole = rule["then"]["properties"]["price"]["anyOf"]
    # What the document says of this body: the `if` holds for JPY and XAF only, and `then`
    # allows whole numbers and strings with zero decimals.
    if re.fullmatch(currency_pattern[1:-1], currency):
        number, string = whole
        assert number["multipleOf"] == 1
        published = (
            re.fullmatch(string["pattern"][1:-1], price) is not None
            if isinstance(price, str)
            else float(price) % 1 == 0  # type: ignore[arg-type]
        )
    else:
        published = True
    assert published is ok
    owner = items_svc.new_user()
    body = {"name": "Tea set", "price": price, "currency": currency}
    response = await items_svc.client.post(API, json=body, headers=items_svc.auth(owner))
    assert response.status_code == (201 if ok else 422), response.text


async def test_a_patch_that_conflicts_with_the_stored_price_or_currency_is_a_409(
    items_svc: ItemsHarness,
) -> None:
    doc = await _document(items_svc)
    assert "409" in doc["paths"][f"{API}/{{item_id}}"]["patch"]["responses"]
    owner = items_svc.new_user()
    yen = await items_svc.create(owner, name="Tea set", price="1500", currency="JPY")
    euro = await items_svc.create(owner, name="Lamp", price="14.37", currency="EUR")
    cases: list[tuple[dict[str, Any], dict[str, Any], int]] = [
        (yen, {"price": "14.37"}, 409),  # valid on its own; the stored JPY refuses cents
        (euro, {"currency": "JPY"}, 409),  # valid on its own; the stored 14.37 has cents
        (euro, {"currency": "JPY", "price": "14.37"}, 422),  # the body itself breaks the rule
        (euro, {"currency": "JPY", "price": "14"}, 200),
        (yen, {"price": 1600}, 200),
    ]
    for item, body, expected in cases:
        url = f"{API}/{item['id']}"
        response = await items_svc.client.patch(url, json=body, headers=items_svc.auth(owner))
        assert response.status_code == expected, (body, response.text)
        if expected == 409:
            problem = response.json()
            assert response.headers["content-type"] == PROBLEM
            assert problem["type"].endswith("/price-not-in-currency"), problem
            assert (problem["currency"], problem["decimals"]) == ("JPY", 0), problem
    # A body that breaks the published rule is refused as a body, before a stale If-Match.
    stale = {**items_svc.auth(owner), "If-Match": '"1"'}
    both = {"currency": "JPY", "price": 14.37}
    response = await items_svc.client.patch(f"{API}/{euro['id']}", json=both, headers=stale)
    assert response.status_code == 422, response.text
    assert ["body", "price"] in [e["loc"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        *[(" ", False), ("\u3000\t", False), ("\x1c", False), ("", False), (" a ", True)],
        *[("x" * 200, True), ("x" * 200 + " ", False), (" " * 199 + "y", True)],
    ],
)
async def test_item_names_accept_exactly_what_the_schema_allows(
    items_svc: ItemsHarness, name: str, ok: bool
) -> None:
    schema = (await _document(items_svc))["components"]["schemas"]["ItemCreate"]
    published = schema["properties"]["name"]
    allowed = published["minLength"] <= len(name) <= published["maxLength"]
    assert (allowed and re.search(published["pattern"], name) is not None) is ok
    owner = items_svc.new_user()
    response = await items_svc.client.post(
        API, json={"name": name, "price": "1"}, headers=items_svc.auth(owner)
    )
    assert response.status_code == (201 if ok else 422), (name, response.text)
