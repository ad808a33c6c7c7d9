"""The items API over HTTP against real Postgres, Redis and the broker: CRUD and validation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agora_items.testing import ItemsHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"
PROBLEM = "application/problem+json"


def _error_locs(body: dict[str, Any]) -> list[list[Any]]:
    return [error["loc"] for error in body.get("errors", [])]


async def test_create_returns_the_item_with_location_and_etag(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    response = await items_svc.client.post(
        API,
        json={
            "name": "  Walnut writing desk  ",
            "description": "Solid walnut, 1960s.",
            "price": 249.9,
            "currency": "usd",
            "tags": ["Furniture", "vintage", "furniture", " Mid-Century "],
        },
        headers=items_svc.auth(owner),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["owner_id"] == owner
    assert body["name"] == "Walnut writing desk"
    assert body["price"] == "249.90"
    assert body["currency"] == "USD"
    assert body["tags"] == ["furniture", "vintage", "mid-century"]
    assert body["status"] == "active"
    assert body["version"] == 1
    assert response.headers["location"] == f"{API}/{body['id']}"
    assert response.headers["etag"] == '"1"'

    fetched = await items_svc.client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert fetched.headers["etag"] == '"1"'


async def test_defaults_are_eur_no_description_no_tags(items_svc: ItemsHarness) -> None:
    body = await items_svc.create(items_svc.new_user(), name="Lamp", price="10")
    assert (body["currency"], body["description"], body["tags"], body["price"]) == (
        "EUR",
        None,
        [],
        "10.00",
    )


async def test_reads_are_public_and_writes_need_a_token(items_svc: ItemsHarness) -> None:
    item = await items_svc.create(items_svc.new_user())
    assert (await items_svc.client.get(f"{API}/{item['id']}")).status_code == 200
    assert (await items_svc.client.get(API)).status_code == 200
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        url = API if method == "POST" else f"{API}/{item['id']}"
        response = await items_svc.client.request(method, url, json={"name": "x", "price": "1.00"})
        assert response.status_code == 401, (method, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.headers["www-authenticate"].startswith("Bearer")
    bad = await items_svc.client.post(
        API, json={"name": "x", "price": "1"}, headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"name": "", "price": "1"}, ["body", "name"]),
        ({"name": "   ", "price": "1"}, ["body", "name"]),
        ({"name": "x" * 201, "price": "1"}, ["body", "name"]),
        ({"name": "ok", "price": "1", "description": "d" * 5001}, ["body", "description"]),
        ({"name": "ok", "price": "0"}, ["body", "price"]),
        ({"name": "ok", "price": "-3"}, ["body", "price"]),
        ({"name": "ok", "price": "1.999"}, ["body", "price"]),
        ({"name": "ok", "price": "NaN"}, ["body", "price"]),
        ({"name": "ok", "price": "abc"}, ["body", "price"]),
        ({"name": "ok", "price": "12345678901.00"}, ["body", "price"]),
        ({"name": "ok"}, ["body", "price"]),
        ({"name": "ok", "price": "1", "currency": "XYZ"}, ["body", "currency"]),
        ({"name": "ok", "price": "1", "currency": "EURO"}, ["body", "currency"]),
        ({"name": "ok", "price": "1", "currency": "XAU"}, ["body", "currency"]),
        (
            {"name": "ok", "price": "1", "tags": ["t"] * 0 + [f"t{i}" for i in range(21)]},
            ["body", "tags"],
        ),
        ({"name": "ok", "price": "1", "tags": ["x" * 33]}, ["body", "tags"]),
        ({"name": "ok", "price": "1", "tags": [""]}, ["body", "tags"]),
        ({"name": "ok", "price": "1", "tags": ["no,commas"]}, ["body", "tags"]),
        ({"name": "ok", "price": "1", "owner_id": 1}, ["body", "owner_id"]),
        ({"name": "ok", "price": "1", "id": 5}, ["body", "id"]),
        ({"name": "ok", "price": "1", "version": 9}, ["body", "version"]),
        ({"name": "ok", "price": "1", "status": "sold"}, ["body", "status"]),
    ],
)
async def test_invalid_create_bodies_get_422_naming_the_field(
    items_svc: ItemsHarness, payload: dict[str, Any], loc: list[str]
) -> None:
    owner = items_svc.new_user()
    response = await items_svc.client.post(API, json=payload, headers=items_svc.auth(owner))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 422
    assert loc in [error_loc[: len(loc)] for error_loc in _error_locs(body)], body
    listed = await items_svc.client.get(API, params={"owner_id": owner})
    assert listed.json()["total"] == 0


async def test_twenty_tags_are_fine_and_duplicates_collapse(items_svc: ItemsHarness) -> None:
    tags = [f"tag{i}" for i in range(20)]
    assert (await items_svc.create(items_svc.new_user(), tags=tags))["tags"] == tags
    # At most 20 as sent (the published maxItems), duplicates included; they then collapse.
    half = tags[:10]
    body = await items_svc.create(items_svc.new_user(), tags=[*half, *(t.upper() for t in half)])
    assert body["tags"] == half


async def test_price_must_fit_the_currency_minor_units(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    response = await items_svc.client.post(
        API,
        json={"name": "Tea set", "price": "1500.50", "currency": "JPY"},
        headers=items_svc.auth(owner),
    )
    assert response.status_code == 422
    assert ["body", "price"] in _error_locs(response.json())
    ok = await items_svc.create(owner, name="Tea set", price="1500", currency="jpy")
    assert (ok["price"], ok["currency"]) == ("1500.00", "JPY")


@pytest.mark.parametrize("item_id", ["0", str(2**63)])
async def test_item_id_must_be_a_positive_integer(items_svc: ItemsHarness, item_id: str) -> None:
    response = await items_svc.client.get(f"{API}/{item_id}")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert ["path", "item_id"] in _error_locs(response.json())


@pytest.mark.parametrize("item_id", ["-1", "abc", "1.5"])
async def test_a_path_that_is_not_a_number_names_no_item(
    items_svc: ItemsHarness, item_id: str
) -> None:
    # Item routes only match digits, so /items/dead-letters can never be taken for an item.
    response = await items_svc.client.get(f"{API}/{item_id}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_unknown_item_is_404_problem(items_svc: ItemsHarness) -> None:
    response = await items_svc.client.get(f"{API}/{2**62}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert str(2**62) in response.json()["detail"]


async def test_if_none_match_gives_304_until_the_item_changes(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    for header in ('"1"', 'W/"1"', '"7", "1"', "*"):
        cached = await items_svc.client.get(url, headers={"If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == '"1"'
    assert (await items_svc.client.get(url, headers={"If-None-Match": '"2"'})).status_code == 200
    changed = await items_svc.client.patch(
        url, json={"name": "Oak desk"}, headers=items_svc.auth(owner)
    )
    assert changed.headers["etag"] == '"2"'
    fresh = await items_svc.client.get(url, headers={"If-None-Match": '"1"'})
    assert fresh.status_code == 200
    assert fresh.json()["name"] == "Oak desk"


async def test_patch_changes_only_the_fields_sent(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner, description="old", tags=["a"])
    url = f"{API}/{item['id']}"
    response = await items_svc.client.patch(
        url,
        json={"price": "99.5", "description": None, "status": "sold"},
        headers=items_svc.auth(owner, **{"If-Match": '"1"'}),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["price"], body["description"], body["status"], body["version"]) == (
        "99.50",
        None,
        "sold",
        2,
    )
    assert (body["name"], body["tags"], body["created_at"]) == (
        item["name"],
        ["a"],
        item["created_at"],
    )
    assert body["updated_at"] > item["updated_at"]
    assert (await items_svc.client.get(url)).json() == body


async def test_a_patch_that_changes_nothing_keeps_the_version(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner, price="5.00")
    url = f"{API}/{item['id']}"
    for payload in ({}, {"price": "5", "name": item["name"]}):
        response = await items_svc.client.patch(url, json=payload, headers=items_svc.auth(owner))
        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert response.headers["etag"] == '"1"'


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        ({"name": None}, ["body", "name"]),
        ({"price": None}, ["body", "price"]),
        ({"tags": None}, ["body", "tags"]),
        ({"status": "deleted"}, ["body", "status"]),
        ({"owner_id": 1}, ["body", "owner_id"]),
        ({"version": 7}, ["body", "version"]),
        ({"id": 3}, ["body", "id"]),
        ({"created_at": "2020-01-01T00:00:00Z"}, ["body", "created_at"]),
    ],
)
async def test_invalid_patches_change_nothing(
    items_svc: ItemsHarness, payload: dict[str, Any], loc: list[str]
) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    response = await items_svc.client.patch(url, json=payload, headers=items_svc.auth(owner))
    assert response.status_code == 422, response.text
    assert loc in [error_loc[: len(loc)] for error_loc in _error_locs(response.json())]
    assert (await items_svc.client.get(url)).json() == item


async def test_put_replaces_every_field(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner, description="old", tags=["a", "b"], currency="GBP")
    url = f"{API}/{item['id']}"
    response = await items_svc.client.put(
        url,
        json={"name": "Chair", "price": "15"},
        headers=items_svc.auth(owner, **{"If-Match": '"1"'}),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["price"], body["description"], body["tags"]) == (
        "Chair",
        "15.00",
        None,
        [],
    )
    assert (body["currency"], body["status"], body["version"]) == ("EUR", "active", 2)
    missing = await items_svc.client.put(url, json={"name": "Chair"}, headers=items_svc.auth(owner))
    assert missing.status_code == 422


async def test_stale_if_match_gives_412_and_changes_nothing(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    await items_svc.client.patch(url, json={"name": "v2"}, headers=items_svc.auth(owner))
    current = (await items_svc.client.get(url)).json()
    for method, payload in (
        ("PATCH", {"name": "v3"}),
        ("PUT", {"name": "v3", "price": "1"}),
        ("DELETE", None),
    ):
        for stale in ('"1"', 'W/"2"', "garbage"):
            response = await items_svc.client.request(
                method, url, json=payload, headers=items_svc.auth(owner, **{"If-Match": stale})
            )
            assert response.status_code == 412, (method, stale, response.text)
            assert response.headers["content-type"].startswith(PROBLEM)
            assert response.json()["current_etag"] == '"2"'
    assert (await items_svc.client.get(url)).json() == current
    ok = await items_svc.client.patch(
        url, json={"name": "v3"}, headers=items_svc.auth(owner, **{"If-Match": '"5", "2"'})
    )
    assert ok.status_code == 200
    assert ok.json()["version"] == 3


async def test_delete_is_204_then_404(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    response = await items_svc.client.delete(url, headers=items_svc.auth(owner))
    assert response.status_code == 204
    assert response.content == b""
    assert (await items_svc.client.get(url)).status_code == 404
    again = await items_svc.client.delete(url, headers=items_svc.auth(owner))
    assert again.status_code == 404


async def test_idempotency_key_replays_the_create(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    headers = items_svc.auth(owner, **{"Idempotency-Key": f"create-{owner}"})
    payload = {"name": "Once", "price": "3.00"}
    first = await items_svc.client.post(API, json=payload, headers=headers)
    second = await items_svc.client.post(API, json=payload, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers.get("idempotent-replayed") == "true"
    assert second.headers["location"] == first.headers["location"]
    other = await items_svc.client.post(API, json={**payload, "price": "4.00"}, headers=headers)
    assert other.status_code == 422
    listed = await items_svc.client.get(API, params={"owner_id": owner})
    assert listed.json()["total"] == 1


async def test_docs_and_openapi_are_served(items_svc: ItemsHarness) -> None:
    spec = await items_svc.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert {"/api/v1/items", "/api/v1/items/{item_id}"} <= set(paths)
    assert set(paths["/api/v1/items/{item_id}"]) == {"get", "patch", "put", "delete"}
    for page in ("/docs", "/redoc"):
        response = await items_svc.client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
    ready = await items_svc.client.get("/health/ready")
    assert ready.status_code == 200, ready.text


async def test_concurrent_writes_with_one_etag_let_exactly_one_through(
    items_svc: ItemsHarness,
) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    responses = await asyncio.gather(
        *(
            items_svc.client.patch(
                url,
                json={"name": f"writer {i}"},
                headers=items_svc.auth(owner, **{"If-Match": '"1"'}),
            )
            for i in range(4)
        )
    )
    assert sorted(r.status_code for r in responses) == [200, 412, 412, 412]
    assert (await items_svc.client.get(url)).json()["version"] == 2


async def test_malformed_json_is_a_422_problem(items_svc: ItemsHarness) -> None:
    headers = {**items_svc.auth(items_svc.new_user()), "Content-Type": "application/json"}
    response = await items_svc.client.post(API, content=b'{"name": "x", "price": ', headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["errors"][0]["type"] == "json_invalid"
