"""Secrets are declared once: the Secret type and the secret names agree across the contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from agora_contract import EVENT_TYPES, SendPasswordReset
from agora_contract.secrets import is_secret_name, secret_fields


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_secret_fields_and_secret_names_agree(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    secret = secret_fields(model)
    named = {name for name in model.model_fields if is_secret_name(name)}
    # A redactor keyed on names finds every Secret, and no secret-named field goes untyped.
    assert secret == named, event_type


def test_the_commands_token_is_a_secret_kept_out_of_reprs() -> None:
    assert secret_fields(SendPasswordReset) == {"token"}
    command = SendPasswordReset(
        user_id=1,
        email="a@example.test",
        name="A",
        token="eyJ-very-secret",
        expires_at=datetime.now(UTC),
    )
    assert "eyJ-very-secret" not in repr(command)
    assert command.token == "eyJ-very-secret"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("new_password", True),
        ("refresh_token", True),
        ("Authorization", True),
        ("client_secret", True),
        ("api_key", True),
        ("email", False),
        ("name", False),
        ("user_id", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret
