"""Object-level authorization: user A against every write on user B's item.

Items are public, so a non-owner gets 403 (not 404: the item's existence is no secret).
Whatever A sends, B's row stays exactly as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from agora_items.models import Item
from agora_items.testing import ItemsHarness

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"

WRITES: list[tuple[str, dict[str, Any] | None]] = [
    ("PATCH", {"price": "1.00"}),
    ("PATCH", {"owner_id": 1}),
    ("PATCH", {}),
    ("PUT", {"name": "Mine now", "price": "1.00"}),
    ("DELETE", None),
]


async def _row(items_svc: ItemsHarness, item_id: int) -> dict[str, Any]:
    async with items_svc.engine.connect() as conn:
        row = (await conn.execute(sa.select(Item.__table__).where(Item.id == item_id))).one()
    return dict(row._mapping)


@pytest.mark.parametrize(("method", "payload"), WRITES)
@pytest.mark.parametrize("if_match", [None, '"1"', "*"])
async def test_a_non_owner_cannot_write(
    items_svc: ItemsHarness, method: str, payload: dict[str, Any] | None, if_match: str | None
) -> None:
    owner, intruder = items_svc.new_user(), items_svc.new_user()
    item = await items_svc.create(owner, tags=["mine"])
    before = await _row(items_svc, item["id"])
    headers = items_svc.auth(intruder)
    if if_match is not None:
        headers["If-Match"] = if_match
    response = await items_svc.client.request(
        method, f"{API}/{item['id']}", json=payload, headers=headers
    )
    if method == "PATCH" and payload and "owner_id" in payload:
        # The body is checked before ownership: the field itself is refused.
        assert response.status_code == 422, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["type"].endswith("/not-item-owner")
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await _row(items_svc, item["id"]) == before
    assert (await items_svc.client.get(f"{API}/{item['id']}")).json() == item


async def test_an_admin_role_does_not_make_a_non_owner_an_owner(items_svc: ItemsHarness) -> None:
    owner, admin = items_svc.new_user(), items_svc.new_user()
    item = await items_svc.create(owner)
    token = items_svc.keyring.token(admin, roles=["admin"])
    response = await items_svc.client.delete(
        f"{API}/{item['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    assert (await items_svc.client.get(f"{API}/{item['id']}")).status_code == 200


async def test_revoked_and_expired_tokens_cannot_write(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    expired = items_svc.keyring.token(owner, ttl_s=-60)
    jti = f"revoked-{owner}"
    revoked = items_svc.keyring.token(owner, jti=jti)
    redis = items_svc.app.state.ctx.redis
    await redis.set(f"agora:revoked:{jti}", "1", ex=120)
    for token in (expired, revoked):
        response = await items_svc.client.patch(
            url, json={"name": "x"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401
    assert (await items_svc.client.get(url)).json() == item


async def test_the_owner_can_do_all_of_it(items_svc: ItemsHarness) -> None:
    owner = items_svc.new_user()
    item = await items_svc.create(owner)
    url = f"{API}/{item['id']}"
    for method, payload in WRITES:
        if payload is not None and "owner_id" in payload:
            continue
        response = await items_svc.client.request(
            method, url, json=payload, headers=items_svc.auth(owner)
        )
        assert response.status_code in (200, 204), (method, response.text)
