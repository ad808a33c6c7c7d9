"""The AsyncAPI 3.0 document: structure, every topic and event, resolvable references."""

from collections.abc import Iterator
from typing import Any

import pytest
from agora_contract import EVENT_TYPES, Envelope, asyncapi_document, decode
from agora_contract.topics import DOMAIN_TOPICS, NOTIFIER_COMMANDS

DOC = asyncapi_document()


def _refs(node: Any) -> Iterator[str]:
    """Yield every `$ref` in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(ref: str) -> Any:
    """Follow a local JSON pointer in the document."""
    assert ref.startswith("#/"), ref
    node: Any = DOC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_document_is_asyncapi_3_with_the_required_sections() -> None:
    assert DOC["asyncapi"] == "3.0.0"
    assert DOC["info"]["title"]
    assert DOC["info"]["version"]
    assert set(DOC) >= {"channels", "operations", "components"}
    assert set(DOC["components"]) >= {"messages", "schemas"}


def test_every_topic_is_a_channel() -> None:
    addresses = {channel["address"] for channel in DOC["channels"].values()}
    assert addresses == set(DOMAIN_TOPICS)


def test_every_event_is_a_message_on_its_topics_channel() -> None:
    by_address = {c["address"]: c for c in DOC["channels"].values()}
    names = {m["name"]: key for key, m in DOC["components"]["messages"].items()}
    assert set(names) == set(EVENT_TYPES)
    for event_type, model in EVENT_TYPES.items():
        channel = by_address[model.topic]
        message = _resolve(channel["messages"][names[event_type]]["$ref"])
        assert message["name"] == event_type
        assert message["contentType"] == "application/cloudevents+json"
        assert message["headers"]["properties"]["ce_type"]["const"] == event_type
        envelope_ref, data_part = message["payload"]["allOf"]
        assert _resolve(envelope_ref["$ref"])["title"] == "Envelope"
        data_schema = _resolve(data_part["properties"]["data"]["$ref"])
        assert list(data_schema["properties"]) == list(model.model_fields)


def test_every_channel_has_a_send_and_a_receive_operation() -> None:
    seen: dict[str, set[str]] = {}
    for operation in DOC["operations"].values():
        assert operation["action"] in {"send", "receive"}
        channel_ref = operation["channel"]["$ref"]
        channel = _resolve(channel_ref)
        seen.setdefault(channel["address"], set()).add(operation["action"])
        channel_messages = {f"{channel_ref}/messages/{key}" for key in channel["messages"]}
        assert {m["$ref"] for m in operation["messages"]} == channel_messages
    assert seen == {topic: {"send", "receive"} for topic in DOMAIN_TOPICS}


def test_every_reference_resolves() -> None:
    refs = set(_refs(DOC))
    assert refs
    for ref in refs:
        assert _resolve(ref) is not None


def test_commands_are_marked_private() -> None:
    commands = [m for m in EVENT_TYPES.values() if m.topic == NOTIFIER_COMMANDS]
    assert commands
    messages = DOC["components"]["messages"]
    for model in commands:
        assert {"name": "private"} in messages[model.__name__]["tags"]
        assert "not part of the public contract" in messages[model.__name__]["description"]
    public = [m for m in EVENT_TYPES.values() if m.topic != NOTIFIER_COMMANDS]
    assert all("tags" not in messages[m.__name__] for m in public)


@pytest.mark.parametrize("name", sorted(DOC["components"]["messages"]))
def test_message_examples_decode_to_their_event(name: str) -> None:
    message = DOC["components"]["messages"][name]
    (example,) = message["examples"]
    envelope = Envelope.model_validate(example["payload"])
    assert type(decode(envelope)).__name__ == name
    assert example["headers"]["ce_id"] == str(envelope.id)
    assert example["headers"]["ce_type"] == message["name"]
