"""Listing: bounds, pagination, search, filters and sorting (scoped to a fresh owner)."""

from __future__ import annotations

from typing import Any

import pytest
from agora_items.testing import ItemsHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"


async def _list(items_svc: ItemsHarness, **params: Any) -> dict[str, Any]:
    response = await items_svc.client.get(API, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _catalogue(items_svc: ItemsHarness) -> tuple[int, list[dict[str, Any]]]:
    """One owner's five items_svc, created in this order."""
    owner = items_svc.new_user()
    specs = [
        {"name": "Oak desk", "price": "120", "tags": ["furniture", "oak"]},
        {
            "name": "Desk lamp",
            "description": "Brass, 100% working",
            "price": "35.5",
            "tags": ["lighting"],
        },
        {
            "name": "Walnut chair",
            "description": "Goes with the oak DESK",
            "price": "80",
            "tags": ["furniture"],
            "currency": "GBP",
        },
        {"name": "Rug", "price": "35.50", "tags": ["textile", "furniture"]},
        {"name": "under_score", "price": "5", "tags": []},
    ]
    created = [await items_svc.create(owner, **spec) for spec in specs]
    return owner, created


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 101}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"skip": -1}, ["query", "skip"]),
        ({"skip": 1_000_001}, ["query", "skip"]),
        ({"owner_id": 0}, ["query", "owner_id"]),
        ({"min_price": "-1"}, ["query", "min_price"]),
        ({"max_price": "cheap"}, ["query", "max_price"]),
        ({"status": "gone"}, ["query", "status"]),
        ({"sort": "name"}, ["query", "sort"]),
        ({"currency": "XYZ"}, ["query", "currency"]),
        ({"search": ""}, ["query", "search"]),
        ({"search": "x" * 101}, ["query", "search"]),
        ({"tag": "x" * 33}, ["query", "tag"]),
    ],
)
async def test_out_of_range_parameters_get_422_problem(
    items_svc: ItemsHarness, params: dict[str, Any], loc: list[str]
) -> None:
    response = await items_svc.client.get(API, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 422
    assert body["request_id"] == response.headers["x-request-id"]
    assert loc in [error["loc"] for error in body["errors"]], body


async def test_bounds_that_are_allowed(items_svc: ItemsHarness) -> None:
    owner, _ = await _catalogue(items_svc)
    page = await _list(items_svc, owner_id=owner, limit=100, skip=0)
    assert (page["total"], len(page["items"]), page["limit"]) == (5, 5, 100)
    assert (await _list(items_svc, owner_id=owner, limit=1))["total"] == 5
    beyond = await _list(items_svc, owner_id=owner, skip=1_000_000)
    assert (beyond["items"], beyond["total"]) == ([], 5)
    default = await _list(items_svc)
    assert (default["skip"], default["limit"]) == (0, 10)
    assert len(default["items"]) <= 10


async def test_pages_are_newest_first_and_do_not_overlap(items_svc: ItemsHarness) -> None:
    owner, created = await _catalogue(items_svc)
    ids = [c["id"] for c in reversed(created)]
    pages = [await _list(items_svc, owner_id=owner, skip=skip, limit=2) for skip in (0, 2, 4)]
    assert [[i["id"] for i in p["items"]] for p in pages] == [ids[0:2], ids[2:4], ids[4:]]
    assert {p["total"] for p in pages} == {5}
    oldest = await _list(items_svc, owner_id=owner, sort="created_at")
    assert [i["id"] for i in oldest["items"]] == ids[::-1]


async def test_sort_by_price_breaks_ties_by_id(items_svc: ItemsHarness) -> None:
    owner, created = await _catalogue(items_svc)
    by_id = {c["name"]: c["id"] for c in created}
    ascending = await _list(items_svc, owner_id=owner, sort="price")
    assert [i["name"] for i in ascending["items"]] == [
        "under_score",
        "Desk lamp",
        "Rug",
        "Walnut chair",
        "Oak desk",
    ]
    assert by_id["Desk lamp"] < by_id["Rug"]
    descending = await _list(items_svc, owner_id=owner, sort="-price")
    assert [i["name"] for i in descending["items"]] == [
        "Oak desk",
        "Walnut chair",
        "Rug",
        "Desk lamp",
        "under_score",
    ]


async def test_search_matches_name_or_description_case_insensitively(
    items_svc: ItemsHarness,
) -> None:
    owner, _ = await _catalogue(items_svc)

    async def names(**params: Any) -> list[str]:
        page = await _list(items_svc, owner_id=owner, sort="created_at", **params)
        assert page["total"] == len(page["items"])
        return [i["name"] for i in page["items"]]

    assert await names(search="desk") == ["Oak desk", "Desk lamp", "Walnut chair"]
    assert await names(search="  OAK ") == ["Oak desk", "Walnut chair"]
    assert await names(search="brass") == ["Desk lamp"]
    # % and _ are plain characters, not wildcards.
    assert await names(search="100%") == ["Desk lamp"]
    assert await names(search="_") == ["under_score"]
    assert await names(search="d_s") == []  # as a wildcard it would match "Desk"
    assert await names(search="nothing like it") == []


async def test_filters_combine(items_svc: ItemsHarness) -> None:
    owner, created = await _catalogue(items_svc)

    async def names(**params: Any) -> list[str]:
        page = await _list(items_svc, owner_id=owner, sort="created_at", **params)
        assert page["total"] == len(page["items"])
        return [i["name"] for i in page["items"]]

    assert await names(tag="furniture") == ["Oak desk", "Walnut chair", "Rug"]
    assert await names(tag=["FURNITURE", "oak"]) == ["Oak desk"]
    assert await names(tag="nope") == []
    assert await names(min_price="35.50", max_price="80") == ["Desk lamp", "Walnut chair", "Rug"]
    assert await names(min_price="35.51") == ["Oak desk", "Walnut chair"]
    assert await names(max_price="5") == ["under_score"]
    assert await names(currency="gbp") == ["Walnut chair"]
    assert await names(tag="furniture", max_price="100") == ["Walnut chair", "Rug"]
    # An empty range is a valid query with no answer (the document cannot relate the two).
    assert await names(min_price="10", max_price="5") == []
    assert await names(search="desk", tag="lighting") == ["Desk lamp"]

    sold = created[3]
    response = await items_svc.client.patch(
        f"{API}/{sold['id']}", json={"status": "sold"}, headers=items_svc.auth(owner)
    )
    assert response.status_code == 200
    assert await names(status="sold") == ["Rug"]
    assert await names(status="active", tag="furniture") == ["Oak desk", "Walnut chair"]
    assert await names(status="inactive") == []


async def test_owner_filter_isolates_owners(items_svc: ItemsHarness) -> None:
    first, second = items_svc.new_user(), items_svc.new_user()
    await items_svc.create(first)
    await items_svc.create(second)
    await items_svc.create(second)
    assert (await _list(items_svc, owner_id=first))["total"] == 1
    page = await _list(items_svc, owner_id=second)
    assert page["total"] == 2
    assert {i["owner_id"] for i in page["items"]} == {second}
