"""Authorization through the gateway: another user's item, admin routes, mass assignment."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Account, Accounts, assert_problem

pytestmark = pytest.mark.attack

ADMIN_ONLY = "This action requires the admin role."


@pytest.fixture(scope="module")
def owner(accounts: Accounts) -> Account:
    """The victim: owns an item."""
    return accounts.new()


@pytest.fixture(scope="module")
def intruder(accounts: Accounts) -> Account:
    """Another signed-in user."""
    return accounts.new()


@pytest.fixture(scope="module")
def item(gateway_client: httpx.Client, owner: Account) -> dict[str, Any]:
    """The owner's item."""
    made = gateway_client.post(
        "/api/v1/items", json={"name": "Walnut desk", "price": "120"}, headers=owner.auth
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


WRITES = [
    ("PUT", {"name": "Mine now", "price": "1"}),
    ("PATCH", {"price": "1"}),
    ("PATCH", {"owner_id": 1}),
    ("DELETE", None),
]


@pytest.mark.parametrize(("method", "body"), WRITES)
def test_another_users_item_cannot_be_changed(
    gateway_client: httpx.Client,
    intruder: Account,
    owner: Account,
    item: dict[str, Any],
    method: str,
    body: dict[str, Any] | None,
) -> None:
    url = f"/api/v1/items/{item['id']}"
    response = gateway_client.request(method, url, json=body, headers=intruder.auth)
    if body is not None and "owner_id" in body:
        # Refused as a body before ownership is looked at: owner_id is not a field.
        assert_problem(response, 422)
    else:
        assert_problem(
            response,
            403,
            detail=f"Only the owner of item {item['id']} may change or delete it.",
        )
    after = gateway_client.get(url)
    assert after.status_code == 200
    assert (after.json()["owner_id"], after.json()["version"]) == (owner.id, item["version"])


ADMIN_ROUTES = [
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/users?search=admin"),
    ("GET", "/api/v1/items/dead-letters"),
    ("GET", "/api/v1/notifications/dead-letters"),
    ("POST", "/api/v1/items/dead-letters/1/replay"),
    ("DELETE", "/api/v1/notifications/dead-letters/1"),
    ("POST", "/api/v1/notifications/dead-letters/1/replay"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_refuse_a_user_token(
    gateway_client: httpx.Client, intruder: Account, method: str, path: str
) -> None:
    response = gateway_client.request(method, path, headers=intruder.auth)
    assert_problem(response, 403, detail=ADMIN_ONLY)


MASS_ASSIGNMENT: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/items", {"name": "Lamp", "price": "5", "owner_id": 1}),
    ("POST", "/api/v1/items", {"name": "Lamp", "price": "5", "id": 1}),
    ("POST", "/api/v1/items", {"name": "Lamp", "price": "5", "version": 99}),
    ("PATCH", "/api/v1/users/me", {"is_admin": True}),
    ("PATCH", "/api/v1/users/me", {"roles": ["admin"]}),
    ("PATCH", "/api/v1/users/me", {"email_verified": True}),
    ("PATCH", "/api/v1/users/me", {"id": 1}),
    ("PATCH", "/api/v1/users/me", {"email": "other@example.com"}),
]


@pytest.mark.parametrize(("method", "path", "body"), MASS_ASSIGNMENT)
def test_mass_assignment_is_refused(
    gateway_client: httpx.Client,
    intruder: Account,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    response = gateway_client.request(method, path, json=body, headers=intruder.auth)
    problem = assert_problem(response, 422)
    field = next(name for name in body if name not in ("name", "price"))
    assert ["body", field] in [error["loc"] for error in problem["errors"]], problem
    me = gateway_client.get("/api/v1/users/me", headers=intruder.auth).json()
    assert (me["id"], me["email"]) == (intruder.id, intruder.email)
    assert me.get("email_verified") is not True
    assert me.get("roles", []) == []
