"""Bad input through the gateway: each gets its exact 4xx and problem body, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from .conftest import Account, Accounts, assert_problem

pytestmark = pytest.mark.attack

JSON = "application/json"
NUL = "the text contains a NUL character"
SURROGATE = "the text contains a lone surrogate, which is not Unicode text"

#: (case, method, path, query, raw body, status, error loc, error msg)
CASES: list[tuple[str, str, str, dict[str, str] | None, bytes | None, int, list[Any], str]] = [
    ("NUL in an item name", "POST", "/api/v1/items", None,
     b'{"name": "a\\u0000b", "price": "1"}', 422, ["body", "name"], NUL),
    ("NUL in a description (PATCH)", "PATCH", "/api/v1/items/{item}", None,
     b'{"description": "\\u0000"}', 422, ["body", "description"], NUL),
    ("NUL in ?search=", "GET", "/api/v1/items", {"search": "a\x00b"}, None,
     422, ["query", "search"], NUL),
    ("lone surrogate in an item name", "PUT", "/api/v1/items/{item}", None,
     b'{"name": "\\ud800", "price": "1"}', 422, ["body", "name"], SURROGATE),
    ("lone surrogate in a user name", "PATCH", "/api/v1/users/me", None,
     b'{"name": "x\\udfff"}', 422, ["body", "name"], SURROGATE),
    ("lone surrogate in a key", "POST", "/api/v1/items", None,
     b'{"\\ud800": 1}', 422, ["body"], f"a key: {SURROGATE}"),
    ("NaN", "POST", "/api/v1/items", None, b'{"name": "a", "price": NaN}',
     422, ["body"], "NaN is not a JSON number: numbers must be finite"),
    ("Infinity", "POST", "/api/v1/items", None, b'{"name": "a", "price": Infinity}',
     422, ["body"], "Infinity is not a JSON number: numbers must be finite"),
    ("1e400", "POST", "/api/v1/items", None, b'{"name": "a", "price": 1e400}',
     422, ["body"], "the number 1e400 is out of range"),
    ("a body 1e999999", "PUT", "/api/v1/notifications/preferences", None, b"1e999999",
     422, ["body"], "the number 1e999999 is out of range"),
    ("a 5000-digit integer", "POST", "/api/v1/items", None,
     b'{"name": "a", "price": ' + b"9" * 5000 + b"}", 422, ["body"],
     "a number has too many digits"),
    ("JSON nested 100,000 deep", "POST", "/api/v1/items", None,
     b"[" * 100_000 + b"]" * 100_000, 422, ["body"], "JSON nested too deeply"),
    ("invalid UTF-8", "POST", "/api/v1/items", None, b'{"name": "\xff\xfe", "price": "1"}',
     422, ["body"], "the body is not UTF-8"),
]  # fmt: skip

#: (case, path, query, loc): huge integers in the query string, 64-bit and beyond.
QUERY_INTS = [
    ("offset past 64 bits", "/api/v1/notifications", {"offset": "10000000000000000000"},
     ["query", "offset"]),
    ("skip past 64 bits", "/api/v1/items", {"skip": "99999999999999999999999"}, ["query", "skip"]),
    ("owner_id past bigint", "/api/v1/items", {"owner_id": str(2**63)}, ["query", "owner_id"]),
    ("limit negative and huge", "/api/v1/items", {"limit": "-" + "9" * 40}, ["query", "limit"]),
    ("item id past bigint", f"/api/v1/items/{2**63}", None, ["path", "item_id"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def user(accounts: Accounts) -> Account:
    """A signed-in user with one item."""
    return accounts.new()


@pytest.fixture(scope="module")
def item_id(gateway_client: httpx.Client, user: Account) -> int:
    """The user's item."""
    made = gateway_client.post(
        "/api/v1/items", json={"name": "Lamp", "price": "3"}, headers=user.auth
    )
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


@pytest.mark.parametrize(
    ("case", "method", "path", "query", "body", "status", "loc", "msg"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_bad_input_gets_its_problem(
    gateway_client: httpx.Client,
    user: Account,
    item_id: int,
    case: str,
    method: str,
    path: str,
    query: dict[str, str] | None,
    body: bytes | None,
    status: int,
    loc: list[Any],
    msg: str,
) -> None:
    headers = {**user.auth, "Content-Type": JSON} if body is not None else user.auth
    url = path.format(item=item_id)
    response = gateway_client.request(method, url, params=query, content=body, headers=headers)
    problem = assert_problem(response, status)
    assert [(e["loc"], e["msg"]) for e in problem["errors"]] == [(loc, msg)], problem


@pytest.mark.parametrize(
    ("case", "path", "query", "loc"), QUERY_INTS, ids=[q[0] for q in QUERY_INTS]
)
def test_huge_integers_get_422(
    gateway_client: httpx.Client,
    user: Account,
    case: str,
    path: str,
    query: dict[str, str] | None,
    loc: list[str],
) -> None:
    response = gateway_client.get(path, params=query, headers=user.auth)
    problem = assert_problem(response, 422)
    assert loc in [e["loc"] for e in problem["errors"]], problem


def test_a_10_mb_body_is_refused_at_the_gateway(
    gateway_client: httpx.Client, user: Account
) -> None:
    body = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'", "price": "1"}'
    headers = {**user.auth, "Content-Type": JSON}
    response = gateway_client.post("/api/v1/items", content=body, headers=headers)
    assert response.status_code == 413, response.text[:200]


SQL = ["' OR 1=1 --", "%", "_", "\\", "'; DROP TABLE items; --", '" OR ""="', "%' OR '%'='"]


def test_sql_metacharacters_in_search_are_literal(
    gateway_client: httpx.Client, user: Account
) -> None:
    marker = "zq-meta"
    literal = f"{marker} 100% of_it's \\ \" end"
    made = gateway_client.post(
        "/api/v1/items", json={"name": literal, "price": "2"}, headers=user.auth
    )
    assert made.status_code == 201, made.text
    for term in SQL:
        page = gateway_client.get("/api/v1/items", params={"search": f"{marker}{term}"})
        assert page.status_code == 200, (term, page.text)
        assert page.json()["total"] == 0, term  # no injection widened the match
    for term in ("100%", "of_it", "it's", "\\", '"'):
        page = gateway_client.get("/api/v1/items", params={"search": term, "owner_id": user.id})
        assert page.status_code == 200, (term, page.text)
        assert [i["name"] for i in page.json()["items"]] == [literal], term
