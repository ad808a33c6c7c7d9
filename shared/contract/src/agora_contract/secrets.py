"""Which values are secret, declared once: every redactor in Agora reads this module.

- :data:`Secret` is the type of a contract field whose value must never outlive its
  delivery: the one-time tokens of the notifier's commands. It is kept out of reprs (so out
  of log lines and tracebacks); the outbox scrubs it from a row once the row is published;
  dead letters and their feed copies never hold it.
- :func:`is_secret_name`: a name that contains one of :data:`SECRET_WORDS` is secret
  wherever it appears: a request field echoed in a validation error, a key of an envelope's
  ``data``, a field of a log line.

The two agree (a contract test checks it): every ``Secret`` field has a secret name, and
every contract field with a secret name is a ``Secret``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

#: Lower-case words that make a name secret (``password``, ``refresh_token``, ``api_key``).
SECRET_WORDS = ("pass", "token", "secret", "key", "credential", "authorization")


def is_secret_name(name: str) -> bool:
    """Whether a field, key or header called ``name`` holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


@dataclass(frozen=True, slots=True)
class _SecretMarker:
    """Marks a field as :data:`Secret` (found by :func:`secret_fields`)."""


SECRET_MARKER = _SecretMarker()

#: A contract field whose value is a secret (never in a repr, scrubbed once delivered).
Secret = Annotated[str, StringConstraints(min_length=1), Field(repr=False), SECRET_MARKER]


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s fields typed :data:`Secret`."""
    return frozenset(
        name for name, info in model.model_fields.items() if SECRET_MARKER in info.metadata
    )
