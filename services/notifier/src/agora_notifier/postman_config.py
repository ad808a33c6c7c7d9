"""How the postman addresses and bounds its deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address

from agora_kit.consumer.retry import Backoff

#: Between attempts of the outcome mark: 0.2 s, doubling, at most 2 s.
MARK_BACKOFF = Backoff(base_s=0.2, max_s=2.0)


MAX_ERROR = 1000


@dataclass(frozen=True, slots=True)
class PostmanConfig:
    """How deliveries are addressed and bounded."""

    sender: Address
    message_id_domain: str
    send_lease_s: float = 60.0
    #: The consumer's attempts; the last one marks a still-failing delivery ``failed``.
    max_attempts: int = 8
    #: How long a database blip on the mark after a send is retried. A mark that is lost
    #: leaves the row ``sending``, so the email goes again once ``send_lease_s`` is over.
    mark_retry_s: float = 10.0
    mark_backoff: Backoff = MARK_BACKOFF
