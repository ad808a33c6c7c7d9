"""Events read off the real items_svc.events topic: one per write, right key, right fields.

"Exactly one" is checked against a later write to the same item: the relay publishes in
outbox order and one item's events share a partition, so once the later event is on the
topic every earlier one is too, and anything else would show up before it.
"""

from __future__ import annotations

import pytest
from agora_contract import CONTENT_TYPE, ItemCreated, ItemDeleted, ItemUpdated
from agora_items.testing import ItemsHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"


async def test_each_write_publishes_exactly_one_event(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    create_headers = items_svc.auth(owner)
    created = await items_svc.client.post(
        API,
        json={"name": "Desk", "description": "Oak", "price": "120", "tags": ["Wood"]},
        headers=create_headers,
    )
    assert created.status_code == 201
    item = created.json()
    url = f"{API}/{item['id']}"
    patch_headers = items_svc.auth(owner)
    patched = await items_svc.client.patch(
        url, json={"price": "99.5", "tags": ["wood", "oak"]}, headers=patch_headers
    )
    assert patched.status_code == 200
    put_headers = items_svc.auth(owner)
    replaced = await items_svc.client.put(
        url,
        json={"name": "Oak desk", "description": "Oak", "price": "99.50", "tags": ["wood", "oak"]},
        headers=put_headers,
    )
    assert replaced.status_code == 200
    delete_headers = items_svc.auth(owner)
    assert (await items_svc.client.delete(url, headers=delete_headers)).status_code == 204

    events = await items_svc.tap.wait_for_item(item["id"], 4)
    assert [e.type for e in events] == [
        ItemCreated.event_type,
        ItemUpdated.event_type,
        ItemUpdated.event_type,
        ItemDeleted.event_type,
    ]
    assert [e.aggregateversion for e in events] == [1, 2, 3, 4]
    assert items_svc.tap.keys_for(item["id"]) == [str(item["id"]).encode()] * 4
    assert {e.source for e in events} == {"/agora/items"}
    assert [e.correlationid for e in events] == [
        h["X-Request-ID"] for h in (create_headers, patch_headers, put_headers, delete_headers)
    ]
    assert len({e.id for e in events}) == 4

    assert events[0].data == {
        "item_id": item["id"],
        "owner_id": owner,
        "name": "Desk",
        "description": "Oak",
        "price": "120.00",
        "currency": "EUR",
        "tags": ["wood"],
        "status": "active",
    }
    assert events[1].data == {
        "item_id": item["id"],
        "owner_id": owner,
        "changes": {
            "price": {"old": "120.00", "new": "99.50"},
            "tags": {"old": ["wood"], "new": ["wood", "oak"]},
        },
    }
    # The PUT sent everything, but only the name differed.
    assert events[2].data["changes"] == {"name": {"old": "Desk", "new": "Oak desk"}}
    assert events[3].data == {"item_id": item["id"], "owner_id": owner, "reason": "owner_request"}

    headers = dict(items_svc.tap.headers[str(events[0].id)])
    assert headers["ce_id"] == str(events[0].id).encode()
    assert headers["ce_type"] == ItemCreated.event_type.encode()
    assert headers["content-type"] == CONTENT_TYPE.encode()


async def test_refused_and_no_op_writes_publish_nothing(items_svc: ItemsHarness) -> None:
    owner, intruder = items_svc.new_user(), items_svc.new_user()
    item = await items_svc.create(owner, price="10")
    url = f"{API}/{item['id']}"
    refused = [
        ("PATCH", {"price": "1"}, items_svc.auth(intruder)),
        ("PUT", {"name": "x", "price": "1"}, items_svc.auth(intruder)),
        ("DELETE", None, items_svc.auth(intruder)),
        ("PATCH", {"price": "1"}, items_svc.auth(owner, **{"If-Match": '"9"'})),
        ("DELETE", None, items_svc.auth(owner, **{"If-Match": '"9"'})),
        ("PATCH", {"price": "-1"}, items_svc.auth(owner)),
        ("PATCH", {"owner_id": intruder}, items_svc.auth(owner)),
        ("PATCH", {"price": "10.00"}, items_svc.auth(owner)),  # a no-op
        ("PATCH", {}, items_svc.auth(owner)),  # a no-op
    ]
    statuses = []
    for method, payload, headers in refused:
        response = await items_svc.client.request(method, url, json=payload, headers=headers)
        statuses.append(response.status_code)
    assert statuses == [403, 403, 403, 412, 412, 422, 422, 200, 200]
    assert (await items_svc.client.delete(url, headers=items_svc.auth(owner))).status_code == 204
    events = await items_svc.tap.wait_for_item(item["id"], 2)
    assert [e.type for e in events] == [ItemCreated.event_type, ItemDeleted.event_type]


async def test_a_failed_create_publishes_nothing(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    bad = await items_svc.client.post(
        API,
        json={"name": "Tea set", "price": "1.5", "currency": "JPY"},
        headers=items_svc.auth(owner),
    )
    assert bad.status_code == 422
    good = await items_svc.create(owner)
    await items_svc.tap.wait_for_item(good["id"], 1)
    created_by_owner = [
        envelope.subject
        for _key, envelope in items_svc.tap.seen
        if envelope.type == ItemCreated.event_type and envelope.data.get("owner_id") == owner
    ]
    assert created_by_owner == [str(good["id"])]
