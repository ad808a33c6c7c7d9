"""The owner projection: users.events envelopes published on the broker, as the users relay would.

Each test waits for the consumer through the projection's own state (the version a later
event sets), since one user's events share a partition and are applied in order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from agora_contract import (
    Envelope,
    FieldChange,
    ItemDeleted,
    UserDeleted,
    UserRegistered,
    UserUpdated,
)
from agora_items.models import Item, UserState, inbox
from agora_items.testing import ItemsHarness
from agora_kit.testing.poll import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

API = "/api/v1/items"


def _renamed(user_id: int) -> UserUpdated:
    return UserUpdated(user_id=user_id, changes={"name": FieldChange(old="Ann", new="Anne")})


async def _state(items_svc: ItemsHarness, user_id: int) -> tuple[bool, int] | None:
    async with items_svc.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(UserState.deleted, UserState.version).where(UserState.user_id == user_id)
            )
        ).one_or_none()
    return (row.deleted, row.version) if row is not None else None


async def _applied(items_svc: ItemsHarness, user_id: int, version: int) -> None:
    """Wait until the projection applied ``version`` of ``user_id``."""

    async def probe() -> bool:
        state = await _state(items_svc, user_id)
        return state is not None and state[1] >= version

    await eventually(probe)


async def _owned(items_svc: ItemsHarness, user_id: int) -> list[int]:
    async with items_svc.engine.connect() as conn:
        rows = await conn.execute(sa.select(Item.id).where(Item.owner_id == user_id))
        return sorted(row.id for row in rows)


async def test_user_deleted_removes_the_items_with_one_event_each(items_svc: ItemsHarness) -> None:
    doomed, bystander = items_svc.new_user(), items_svc.new_user()
    mine = [(await items_svc.create(doomed, name=f"thing {i}"))["id"] for i in range(3)]
    theirs = (await items_svc.create(bystander))["id"]
    for item_id in mine:
        await items_svc.tap.wait_for_item(item_id, 1)

    envelope = await items_svc.publish_user_event(UserDeleted(user_id=doomed), aggregateversion=4)
    await _applied(items_svc, doomed, 4)

    assert await _state(items_svc, doomed) == (True, 4)
    assert await _owned(items_svc, doomed) == []
    for item_id in mine:
        assert (await items_svc.client.get(f"{API}/{item_id}")).status_code == 404
        events = await items_svc.tap.wait_for_item(item_id, 2)
        assert [e.type for e in events][1:] == [ItemDeleted.event_type]
        assert events[1].data == {"item_id": item_id, "owner_id": doomed, "reason": "owner_deleted"}
        assert events[1].aggregateversion == 2
        assert items_svc.tap.keys_for(item_id)[1] == str(item_id).encode()
    assert (await items_svc.client.get(f"{API}/{theirs}")).status_code == 200
    listed = await items_svc.client.get(API, params={"owner_id": doomed})
    assert listed.json() == {"items": [], "total": 0, "skip": 0, "limit": 10}

    # A deleted account's token may live on for minutes: creating is refused.
    refused = await items_svc.client.post(
        API, json={"name": "again", "price": "1"}, headers=items_svc.auth(doomed)
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/account-deleted")
    assert await _owned(items_svc, doomed) == []

    async with items_svc.engine.connect() as conn:
        claimed = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(inbox)
            .where(
                inbox.c.event_id == envelope.id, inbox.c.consumer_group == items_svc.consumer.group
            )
        )
    assert claimed == 1


async def test_cascaded_deletes_carry_the_correlation_id_of_the_user_deleted(
    items_svc: ItemsHarness,
) -> None:
    doomed = items_svc.new_user()
    mine = [(await items_svc.create(doomed, name=f"thing {i}"))["id"] for i in range(2)]
    for item_id in mine:
        await items_svc.tap.wait_for_item(item_id, 1)
    correlation = f"req-{uuid.uuid4().hex}"
    envelope = Envelope.wrap(
        UserDeleted(user_id=doomed), aggregateversion=4, correlationid=correlation
    )
    await items_svc.publish_envelope(envelope)
    await _applied(items_svc, doomed, 4)
    for item_id in mine:
        events = await items_svc.tap.wait_for_item(item_id, 2)
        assert events[1].type == ItemDeleted.event_type
        # The delete a request caused (users: DELETE /me) is traceable down to each item.
        assert events[1].correlationid == correlation
        assert events[1].id != envelope.id


async def test_the_same_user_deleted_twice_is_applied_once(items_svc: ItemsHarness) -> None:
    user = items_svc.new_user()
    item_id = (await items_svc.create(user))["id"]
    envelope = Envelope.wrap(UserDeleted(user_id=user))  # no version: only the inbox dedupes
    await items_svc.publish_envelope(envelope)
    await eventually(lambda: _deleted(items_svc, user))
    # A row the second delivery would delete if it were applied again.
    async with items_svc.engine.begin() as conn:
        planted = (
            await conn.execute(
                sa.insert(Item)
                .values(owner_id=user, name="planted", price=1, currency="EUR", version=1)
                .returning(Item.id)
            )
        ).scalar_one()

    await items_svc.publish_envelope(envelope)
    await items_svc.publish_user_event(_renamed(user), aggregateversion=9)  # the marker behind it
    await _applied(items_svc, user, 9)

    assert await _owned(items_svc, user) == [planted]
    events = await items_svc.tap.wait_for_item(item_id, 2)
    assert [e.type for e in events].count(ItemDeleted.event_type) == 1
    assert items_svc.tap.for_item(planted) == []


async def _deleted(items_svc: ItemsHarness, user_id: int) -> bool:
    state = await _state(items_svc, user_id)
    return state is not None and state[0]


async def test_an_older_user_deleted_is_ignored(items_svc: ItemsHarness) -> None:
    user = items_svc.new_user()
    item_id = (await items_svc.create(user))["id"]
    await items_svc.publish_user_event(_renamed(user), aggregateversion=5)
    await items_svc.publish_user_event(UserDeleted(user_id=user), aggregateversion=3)
    await items_svc.publish_user_event(_renamed(user), aggregateversion=6)
    await _applied(items_svc, user, 6)

    assert await _state(items_svc, user) == (False, 6)
    assert await _owned(items_svc, user) == [item_id]
    assert (await items_svc.create(user))["owner_id"] == user


async def test_the_projection_keeps_no_personal_data(items_svc: ItemsHarness) -> None:
    user = items_svc.new_user()
    registered = UserRegistered(
        user_id=user,
        email=f"u{user}@example.com",
        name="Ann Example",
        registered_at=datetime.now(UTC),
    )
    await items_svc.publish_user_event(registered, aggregateversion=1)
    await _applied(items_svc, user, 1)
    async with items_svc.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.text("SELECT * FROM user_state WHERE user_id = :u"), {"u": user}
                )
            )
            .mappings()
            .one()
        )
    assert set(row) == {"user_id", "deleted", "version", "updated_at"}
    assert (row["deleted"], row["version"]) == (False, 1)


async def test_a_poison_message_is_dead_lettered_and_does_not_block(
    items_svc: ItemsHarness,
) -> None:
    user = items_svc.new_user()
    item_id = (await items_svc.create(user))["id"]
    await items_svc.tap.wait_for_item(item_id, 1)
    # Same key as the user's next event, so it sits in front of it on the partition.
    await items_svc.producer.send_and_wait(
        items_svc.settings.users_topic, b"{not json", key=str(user).encode()
    )
    bad_data = Envelope.wrap(UserDeleted(user_id=user)).model_copy(update={"data": {"user_id": 0}})
    await items_svc.publish_envelope(bad_data)
    await items_svc.publish_user_event(UserDeleted(user_id=user), aggregateversion=2)
    await _applied(items_svc, user, 2)
    assert await _owned(items_svc, user) == []

    dead = items_svc.consumer.dispatcher.tables.dead_letter
    async with items_svc.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(dead.c.error_kind, dead.c.event_id)
                .where(
                    dead.c.consumer_group == items_svc.consumer.group,
                    dead.c.key == str(user).encode(),
                )
                .order_by(dead.c.id)
            )
        ).all()
    assert [row.error_kind for row in rows] == ["malformed", "invalid"]
    assert rows[1].event_id == bad_data.id
    assert isinstance(rows[1].event_id, uuid.UUID)

    # Operators see them through the admin API; other callers do not.
    admin = items_svc.keyring.token(items_svc.new_user(), roles=["admin"])
    admin_headers = {"Authorization": f"Bearer {admin}"}
    listed = await items_svc.client.get(f"{API}/dead-letters", headers=admin_headers)
    assert listed.status_code == 200, listed.text
    mine = [d for d in listed.json()["items"] if d["event_id"] == str(bad_data.id)]
    assert [(d["error_kind"], d["status"], d["key"]) for d in mine] == [
        ("invalid", "pending", str(user))
    ]
    shown = await items_svc.client.get(f"{API}/dead-letters/{mine[0]['id']}", headers=admin_headers)
    assert shown.json()["event_type"] == UserDeleted.event_type
    discarded = await items_svc.client.delete(
        f"{API}/dead-letters/{mine[0]['id']}", headers=admin_headers
    )
    assert discarded.json()["status"] == "discarded"
    refused = await items_svc.client.get(f"{API}/dead-letters", headers=items_svc.auth(user))
    assert refused.status_code == 403
