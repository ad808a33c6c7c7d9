"""Agora's published event contract: CloudEvents envelope, topics and the v1 event models."""

from agora_contract.asyncapi import asyncapi_document
from agora_contract.base import Command, Event
from agora_contract.commands import SendEmailVerification, SendPasswordReset
from agora_contract.envelope import CONTENT_TYPE, Envelope
from agora_contract.errors import ContractError, InvalidEvent, UnknownEventType
from agora_contract.fields import ChangeSet, FieldChange, changes_between
from agora_contract.items import ItemCreated, ItemDeleted, ItemUpdated
from agora_contract.notifications import NotificationFailed, NotificationSent
from agora_contract.registry import EVENT_TYPES, decode
from agora_contract.users import UserDeleted, UserEmailChanged, UserRegistered, UserUpdated
from agora_contract.version import CONTRACT_VERSION

__all__ = [
    "CONTENT_TYPE",
    "CONTRACT_VERSION",
    "EVENT_TYPES",
    "ChangeSet",
    "Command",
    "ContractError",
    "Envelope",
    "Event",
    "FieldChange",
    "InvalidEvent",
    "ItemCreated",
    "ItemDeleted",
    "ItemUpdated",
    "NotificationFailed",
    "NotificationSent",
    "SendEmailVerification",
    "SendPasswordReset",
    "UnknownEventType",
    "UserDeleted",
    "UserEmailChanged",
    "UserRegistered",
    "UserUpdated",
    "asyncapi_document",
    "changes_between",
    "decode",
]
