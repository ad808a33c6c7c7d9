"""The AsyncAPI 3.0 document of the contract, generated from the models."""

from collections.abc import Mapping
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from agora_contract.artefacts import asyncapi_document as asyncapi_document
from agora_contract.base import Event
from agora_contract.envelope import CONTENT_TYPE, Envelope
from agora_contract.registry import EVENT_TYPES
from agora_contract.topics import (
    DEFAULT_PARTITIONS,
    DOMAIN_TOPICS,
    ITEMS_EVENTS,
    NOTIFICATIONS_EVENTS,
    NOTIFIER_COMMANDS,
    USERS_EVENTS,
)
from agora_contract.version import CONTRACT_VERSION

KAFKA_BINDING: Final = "0.5.0"
_REF: Final = "#/components/schemas/{model}"
_PRIVATE: Final = (
    "Private: not part of the public contract. It carries one-time secret tokens and is "
    "restricted by ACL in production; other teams must not subscribe to it."
)
_PRODUCERS: Final = {
    USERS_EVENTS: ("users", "Account lifecycle events of the users service."),
    ITEMS_EVENTS: ("items", "Item lifecycle events of the items service."),
    NOTIFICATIONS_EVENTS: ("notifier", "Delivery outcomes of the notifier's e-mails."),
    NOTIFIER_COMMANDS: ("users", "One-time mail requests from the users service. " + _PRIVATE),
}
#: The consumer groups inside Agora that read each topic (published as ``x-agora-consumers`` on
#: the receive operations, so the event catalogue can show them).
_CONSUMERS: Final = {
    USERS_EVENTS: ("items", "notifier"),
    ITEMS_EVENTS: ("notifier",),
    NOTIFICATIONS_EVENTS: (),
    NOTIFIER_COMMANDS: ("notifier",),
}
_DESCRIPTION: Final = (
    "Domain events of Agora as CloudEvents 1.0 in structured JSON mode, one event per Kafka "
    "message, keyed by `subject` (the aggregate id). Delivery is at-least-once: deduplicate "
    "on `id` (a replayed event keeps its `id`); order holds per key only; ignore fields you "
    "do not know. A breaking change gets a new `.v2` type; `v1` stays as it is."
)


def channel_id(topic: str) -> str:
    """Return the AsyncAPI channel id of a topic: `users.events` -> `usersEvents`."""
    head, *rest = topic.replace("-", ".").split(".")
    return head + "".join(part.capitalize() for part in rest)


def _headers(model: type[Event]) -> dict[str, Any]:
    """Return the schema of the Kafka headers that accompany a message."""
    return {
        "type": "object",
        "required": ["ce_id", "ce_type", "content-type"],
        "properties": {
            "ce_id": {"type": "string", "format": "uuid", "description": "The envelope `id`."},
            "ce_type": {"const": model.event_type, "description": "The envelope `type`."},
            "content-type": {"const": CONTENT_TYPE},
            "traceparent": {"type": "string", "description": "W3C trace context, when traced."},
        },
    }


def _message(model: type[Event], example: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the AsyncAPI message of one event type: envelope + data, headers, key."""
    message: dict[str, Any] = {
        "name": model.event_type,
        "title": model.__name__,
        "summary": model.__doc__ or model.__name__,
        "contentType": CONTENT_TYPE,
        "headers": _headers(model),
        "payload": {
            "allOf": [
                {"$ref": _REF.format(model="Envelope")},
                {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "type": {"const": model.event_type},
                        "source": {"const": model.source},
                        "data": {"$ref": _REF.format(model=model.__name__)},
                    },
                },
            ]
        },
        "correlationId": {
            "description": "The X-Request-ID of the request that caused the event.",
            "location": "$message.payload#/correlationid",
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"The subject: the {model.key_field}."},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    if model.private:
        message["description"] = _PRIVATE
        message["tags"] = [{"name": "private"}]
    if example is not None:
        headers = {"ce_id": example["id"], "ce_type": example["type"], "content-type": CONTENT_TYPE}
        message["examples"] = [{"name": model.__name__, "headers": headers, "payload": example}]
    return message


def _schemas() -> dict[str, Any]:
    """Return the component schemas: the envelope, each event's data, and what they share."""
    models: list[type[Event] | type[Envelope]] = [Envelope, *EVENT_TYPES.values()]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    return dict(sorted(schemas.items()))


def build_asyncapi(examples: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the AsyncAPI 3.0.0 document, with the committed examples keyed by event type."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in DOMAIN_TOPICS:
        cid = channel_id(topic)
        models = [m for m in EVENT_TYPES.values() if m.topic == topic]
        producer, description = _PRODUCERS[topic]
        for model in models:
            messages[model.__name__] = _message(model, examples.get(model.event_type))
        channels[cid] = {
            "address": topic,
            "title": topic,
            "description": description,
            "messages": {
                m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in models
            },
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "partitions": DEFAULT_PARTITIONS,
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }
        refs = [{"$ref": f"#/channels/{cid}/messages/{m.__name__}"} for m in models]
        channel = {"$ref": f"#/channels/{cid}"}
        suffix = cid[0].upper() + cid[1:]
        operations[f"send{suffix}"] = {
            "action": "send",
            "channel": channel,
            "summary": f"The {producer} service publishes to {topic} through its outbox.",
            "messages": refs,
            "x-agora-producer": producer,
        }
        operations[f"receive{suffix}"] = {
            "action": "receive",
            "channel": channel,
            "summary": (
                "The notifier consumes the commands. " + _PRIVATE
                if topic == NOTIFIER_COMMANDS
                else f"Subscribers consume {topic}: at-least-once, deduplicate on `id`."
            ),
            "messages": refs,
            "x-agora-consumers": list(_CONSUMERS[topic]),
        }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Agora events", "version": CONTRACT_VERSION, "description": _DESCRIPTION},
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _schemas()},
    }
