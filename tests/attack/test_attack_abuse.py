"""Brute force and mail-header injection through the gateway."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from email.message import EmailMessage

import httpx
import pytest
from agora_deploy.testing import SystemStack
from agora_kit.testing.mail import MailClient

from .conftest import Accounts, assert_problem

pytestmark = pytest.mark.attack

#: The users service's per-(account, client address) failure limit (docs/security.md).
PER_ACCOUNT_AND_ADDRESS = 5
GUESSES = 40


def test_parallel_wrong_passwords_are_throttled_and_the_owner_still_signs_in(
    system_stack: SystemStack, accounts: Accounts, gateway_client: httpx.Client
) -> None:
    owner = accounts.new()  # signed in from 127.0.0.1: a known address of the owner's
    # The attacker comes from another loopback address; the gateway forwards it as the client.
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=system_stack.gateway, transport=transport, timeout=30) as attacker:

        def guess(n: int) -> httpx.Response:
            form = {"grant_type": "password", "username": owner.email, "password": f"guess {n}"}
            return attacker.post("/api/v1/auth/token", data=form)

        with ThreadPoolExecutor(max_workers=GUESSES) as pool:
            responses = list(pool.map(guess, range(GUESSES)))
        statuses = Counter(r.status_code for r in responses)
        # Exactly the limit reached the password hash; every other guess was refused first.
        assert statuses == {400: PER_ACCOUNT_AND_ADDRESS, 429: GUESSES - PER_ACCOUNT_AND_ADDRESS}
        for response in responses:
            if response.status_code == 400:
                assert response.json()["error"] == "invalid_grant", response.text
            else:
                assert_problem(response, 429)
                assert int(response.headers["retry-after"]) >= 1
        # Even the right password is refused from the attacker's address...
        right = {"grant_type": "password", "username": owner.email, "password": owner.password}
        assert_problem(attacker.post("/api/v1/auth/token", data=right), 429)
    # ...while the owner, from the address they signed in from before, gets in.
    accounts.sign_in(owner.email, owner.password)


#: (case, user name, registration status): names that try to add a header to the mail.
EVIL_Q = "=?utf-8?q?Eve=0D=0AReply-To:_evil@example.com=0D=0A=0D=0AReset_at_http://evil.example?="
HOSTILE_NAMES = [
    ("Q encoded-word", EVIL_Q, 201),
    ("B encoded-word", "=?utf-8?b?RXZlDQpSZXBseS1UbzogZXZpbEBleGFtcGxlLmNvbQ0KDQpSZXNldA==?=", 201),
    ("raw CR LF", "Eve\r\nReply-To: evil@example.com", 422),
    ("U+2028", "Eve\u2028Reply-To: evil@example.com", 422),
]  # fmt: skip


KNOWN_HEADERS = {
    *("from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version"),
    *("content-type", "content-transfer-encoding", "x-agora-event-id", "x-agora-kind"),
    "return-path",  # the sink adds it on receipt
}


@pytest.mark.parametrize(
    ("case", "name", "status"), HOSTILE_NAMES, ids=[h[0] for h in HOSTILE_NAMES]
)
def test_a_hostile_name_cannot_add_a_mail_header(
    accounts: Accounts,
    gateway_client: httpx.Client,
    mail: MailClient,
    case: str,
    name: str,
    status: int,
) -> None:
    email = f"attack-mail-{abs(hash(case)) % 10**8}-{len(name)}@example.com"
    body = {"email": email, "password": accounts.password(), "name": name}
    response = gateway_client.post("/api/v1/users", json=body)
    if status == 422:
        problem = assert_problem(response, 422)
        assert ["body", "name"] in [e["loc"] for e in problem["errors"]], problem
        return
    assert response.status_code == 201, response.text
    # By count, not subject: an injected header could cut the Subject short.
    found = mail.wait(lambda ms: len(ms) >= 2, address=email)
    for summary in found:
        parsed = message_from_bytes(mail.raw(str(summary["ID"])), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        assert parsed["Reply-To"] is None, case
        # The name stays inside the display name: one recipient, no Reply-To, no new header.
        assert [a.addr_spec for a in parsed["To"].addresses] == [email]
        assert [k for k in parsed.keys() if k.lower() not in KNOWN_HEADERS] == [], case  # noqa: SIM118 - a Message, not a dict
        for header, value in parsed.items():
            assert "\n" not in str(value), header
            assert "\r" not in str(value), header
        text = parsed.get_body(("plain",))
        assert text is not None, case
        assert text.get_content().startswith("Hello "), case
