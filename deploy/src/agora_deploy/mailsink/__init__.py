"""An SMTP sink that serves Mailpit's HTTP API, for `make run` and the tests."""

from agora_deploy.mailsink.chaos import Chaos, ChaosError, Trigger
from agora_deploy.mailsink.message import StoredMessage
from agora_deploy.mailsink.mime import Address
from agora_deploy.mailsink.server import MailSink, MailSinkConfig
from agora_deploy.mailsink.store import MailStore

__all__ = [
    "Address",
    "Chaos",
    "ChaosError",
    "MailSink",
    "MailSinkConfig",
    "MailStore",
    "StoredMessage",
    "Trigger",
]
