"""`agora up --trace`: one POST /api/v1/items through the gateway, then `agora trace` shows
every hop of that request, from the HTTP request to the SMTP send of the owner's email."""

from __future__ import annotations

import uuid

import httpx
from agora_deploy.testing import SystemStack, run_agora, verify_address
from agora_deploy.traces import find_trace, read_spans, traces_dir
from agora_kit.testing.mail import MailClient
from agora_kit.testing.poll import eventually_sync

#: The hops, in order, each a child of the one before (service, span name).
HOPS = [
    ("items", "POST /api/v1/items"),
    ("items", "outbox enqueue"),
    ("items", "relay publish"),
    ("items", "items.events send"),
    ("notifier", "consumer handle"),
    ("notifier", "smtp send"),
]


def test_agora_trace_shows_every_hop_of_one_request(system_stack: SystemStack) -> None:
    email = f"trace-{uuid.uuid4().hex[:10]}@example.com"
    password = f"pw-{uuid.uuid4().hex}"
    with (
        httpx.Client(base_url=system_stack.gateway, timeout=15) as gateway,
        MailClient(system_stack.mail_api) as mail,
    ):
        created = gateway.post(
            "/api/v1/users", json={"email": email, "name": "Tracer", "password": password}
        )
        assert created.status_code == 201, created.text
        verify_address(gateway, mail, email)  # item mail goes to verified addresses only
        token = gateway.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": email, "password": password},
        )
        assert token.status_code == 200, token.text
        item = gateway.post(
            "/api/v1/items",
            json={"name": "Traced lamp", "price": "12.50", "currency": "EUR"},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert item.status_code == 201, item.text
        request_id = item.headers["X-Request-ID"]
        mail.wait_subject(email, "listed", timeout_s=60)

    # The SMTP span is written as soon as it ends, right after the sink's 250.
    folder = traces_dir(system_stack.infra.state_dir)
    eventually_sync(
        lambda: any(s.name == "smtp send" for s in find_trace(read_spans(folder), request_id)),
        timeout_s=30,
        what="the smtp send span",
    )
    result = run_agora(system_stack.infra.state_dir, "trace", request_id, timeout=120)
    assert result.returncode == 0, result.stderr
    header, columns, *lines = result.stdout.splitlines()
    assert f"request {request_id}" in header
    assert columns.split() == ["start", "ms", "duration", "ms", "service", "span"], columns
    tree_at = columns.index("span")  # the tree column: two spaces of indent per level
    rows = []
    for line in lines:
        start, duration, service = line[:tree_at].split()
        tree = line[tree_at:]
        name = tree.lstrip()
        rows.append((float(start), float(duration), service, (len(tree) - len(name)) // 2, name))
    assert rows[0][2:] == ("items", 0, "POST /api/v1/items"), rows[0]

    # Each hop appears after the one before, one level deeper (its child), in its service.
    at, depth = -1, -1
    for service, name in HOPS:
        found = [
            i
            for i, row in enumerate(rows)
            if i > at and row[2] == service and row[4] == name and row[3] > depth
        ]
        assert found, (service, name, result.stdout)
        at, depth = found[0], rows[found[0]][3]
    # The chain ends at the SMTP send: nothing of ours below it, and it took measurable time.
    smtp = rows[at]
    assert smtp[4] == "smtp send"
    assert smtp[1] > 0
    assert all(row[3] <= smtp[3] for row in rows[at + 1 :] if row[4] == "smtp send")
