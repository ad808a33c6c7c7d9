"""Secrets in a command's data never reach a dead letter or its feed copy."""

from __future__ import annotations

import json

from agora_kit.outbox import REDACTED, redact_secrets


def test_token_in_data_is_redacted_and_the_rest_kept() -> None:
    raw = json.dumps(
        {"id": "e1", "type": "agora.users.command.send_password_reset.v1",
         "data": {"user_id": 7, "email": "a@b.c", "token": "eyJsecret"}}
    ).encode()  # fmt: skip
    out = redact_secrets(raw)
    assert out is not None
    assert b"eyJsecret" not in out
    doc = json.loads(out)
    assert doc["data"] == {"user_id": 7, "email": "a@b.c", "token": REDACTED}
    assert doc["id"] == "e1"


def test_other_messages_are_unchanged() -> None:
    plain = json.dumps({"id": "e2", "data": {"user_id": 1}}).encode()
    assert redact_secrets(plain) is plain
    assert redact_secrets(b"not json {") == b"not json {"
    assert redact_secrets(b"[1, 2]") == b"[1, 2]"
    assert redact_secrets(None) is None
