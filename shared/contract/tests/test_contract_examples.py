"""Every committed example is still accepted, unchanged, by its model and the envelope."""

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from agora_contract import EVENT_TYPES, Envelope, Event, decode
from agora_contract import registry as registry_module
from agora_contract.compat import example_problems
from agora_contract.fields import EmailAddress, Id

EXAMPLES = Path(registry_module.__file__).parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    """Read one committed example."""
    document: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return document


def test_every_event_type_has_exactly_one_committed_example() -> None:
    assert {path.stem for path in EXAMPLE_FILES} == set(EVENT_TYPES)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_committed_example_is_accepted_by_envelope_and_model(path: Path) -> None:
    document = _load(path)
    envelope = Envelope.from_bytes(path.read_bytes())
    event = decode(envelope)
    assert envelope.type == path.stem
    assert type(event) is EVENT_TYPES[path.stem]
    assert envelope.subject == str(getattr(event, event.key_field))
    assert event.model_dump(mode="json").items() >= document["data"].items()
    assert example_problems(path.stem, document) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d["data"].pop("email"), "invalid data"),
        (lambda d: d["data"].update(user_id="forty-two"), "invalid data"),
        (lambda d: d.update(type="agora.users.user.registered.v9"), "unknown event type"),
        (lambda d: d.update(subject="43"), "is not the user_id"),
        (lambda d: d.pop("id"), "not a valid envelope"),
        (lambda d: d.update(source="/agora/items"), "comes from"),
    ],
)
def test_example_check_rejects_a_broken_example(mutate: Any, reason: str) -> None:
    document = _load(EXAMPLES / "agora.users.user.registered.v1.json")
    mutate(document)
    found = example_problems("agora.users.user.registered.v1", document)
    assert any(reason in line for line in found), found


class _RegisteredWithoutName(Event):
    """UserRegistered after someone dropped `name`: a breaking change."""

    event_type: ClassVar[str] = "agora.users.user.registered.v1"
    topic: ClassVar[str] = "users.events"
    source: ClassVar[str] = "/agora/users"
    key_field: ClassVar[str] = "user_id"

    user_id: Id
    email: EmailAddress
    registered_at: str


class _RegisteredWithNewRequiredField(_RegisteredWithoutName):
    """UserRegistered after someone added a required field: a breaking change."""

    name: str
    locale: str


class _RegisteredWithNewOptionalField(_RegisteredWithoutName):
    """UserRegistered after someone added an optional field: a compatible change."""

    name: str
    locale: str | None = None


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_RegisteredWithoutName, "fields no longer in the contract: name"),
        (_RegisteredWithNewRequiredField, "locale"),
    ],
)
def test_a_breaking_model_change_fails_against_the_committed_example(
    monkeypatch: pytest.MonkeyPatch, model: type[Event], reason: str
) -> None:
    monkeypatch.setitem(EVENT_TYPES, model.event_type, model)
    document = _load(EXAMPLES / f"{model.event_type}.json")
    found = example_problems(model.event_type, document)
    assert any(reason in line for line in found), found


def test_an_added_optional_field_stays_compatible(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _RegisteredWithNewOptionalField
    monkeypatch.setitem(EVENT_TYPES, model.event_type, model)
    document = _load(EXAMPLES / f"{model.event_type}.json")
    assert example_problems(model.event_type, document) == []


def test_a_removed_event_type_fails_against_its_committed_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(EVENT_TYPES, "agora.items.item.deleted.v1")
    document = _load(EXAMPLES / "agora.items.item.deleted.v1.json")
    found = example_problems("agora.items.item.deleted.v1", document)
    assert any("breaking change" in line for line in found), found
