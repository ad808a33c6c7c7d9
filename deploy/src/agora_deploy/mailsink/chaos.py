"""Mailpit's chaos triggers: make the SMTP server fail MAIL, RCPT or AUTH on purpose.

``PUT /api/v1/chaos`` takes Mailpit's body, ``{"Sender"|"Recipient"|"Authentication":
{"ErrorCode": 451, "Probability": 100}}``, and ``GET`` shows the triggers in the same shape.

**Agora extension (Mailpit does not have it):** a ``Sender`` or ``Recipient`` trigger may
also carry ``"Addresses": ["a@x.test", ...]``. Then ``Recipient`` fires only for a ``RCPT
TO`` of one of those addresses and ``Sender`` only for a ``MAIL FROM`` of one of them
(compared case-insensitively; ``Probability`` still applies to the matching commands), so
one recipient can fail while every other one keeps getting mail. Absent, ``null`` or
``[]`` means every address, exactly as in Mailpit. ``GET`` (and the ``PUT`` answer) show
``Addresses`` only on a trigger that has some, so without the extension the JSON is
Mailpit's byte for byte; a trigger that is off keeps none. ``Authentication`` takes no
``Addresses`` (AUTH names no address), and an entry that is not a ``local@domain`` string
makes the whole ``PUT`` a 400 that changes nothing, like every other invalid value.

Mailpit itself ignores the unknown field and would fail *every* address, so a test that
relies on ``Addresses`` runs against the embedded sink only: it checks that the answer to
its ``PUT`` shows the addresses back, and skips otherwise.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from agora_deploy.mailsink._json import json_field

TriggerName = Literal["Sender", "Recipient", "Authentication"]
TRIGGER_NAMES: Final[tuple[TriggerName, ...]] = ("Sender", "Recipient", "Authentication")
DEFAULT_CODES: Final[Mapping[TriggerName, int]] = {
    "Sender": 451,
    "Recipient": 451,
    "Authentication": 535,
}
#: The triggers whose SMTP command names an address, so ``Addresses`` can scope them.
ADDRESSED: Final[frozenset[TriggerName]] = frozenset({"Sender", "Recipient"})
#: RFC 5321's limit on a path (256 octets) less its angle brackets.
MAX_ADDRESS_LENGTH: Final = 254


class ChaosError(ValueError):
    """A chaos configuration that Mailpit (or the Addresses extension) would refuse."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """One fault: the SMTP code, the percentage of commands that get it, and whose commands.

    ``addresses`` empty means every address (Mailpit's behaviour); otherwise only commands
    naming one of them (case-insensitively) can fail.
    """

    error_code: int
    probability: int
    addresses: tuple[str, ...] = ()

    def applies_to(self, address: str | None) -> bool:
        """Say whether a command naming ``address`` (None: no address) is in scope."""
        if not self.addresses:
            return True
        if address is None:
            return False
        wanted = address.casefold()
        return any(a.casefold() == wanted for a in self.addresses)

    def to_json(self) -> dict[str, int | list[str]]:
        """Return Mailpit's JSON form of a trigger (plus ``Addresses`` when it has some)."""
        shown: dict[str, int | list[str]] = {
            "ErrorCode": self.error_code,
            "Probability": self.probability,
        }
        if self.addresses:
            shown["Addresses"] = list(self.addresses)
        return shown


class Chaos:
    """The current triggers; read by the SMTP handler on every command, set by the API."""

    def __init__(self) -> None:
        self._triggers: dict[TriggerName, Trigger] = {
            name: Trigger(DEFAULT_CODES[name], 0) for name in TRIGGER_NAMES
        }

    def get(self, name: TriggerName) -> Trigger:
        """Return the trigger for one SMTP stage."""
        return self._triggers[name]

    def set(
        self,
        name: TriggerName,
        *,
        error_code: int,
        probability: int,
        addresses: Iterable[str] = (),
    ) -> Trigger:
        """Set one trigger; ErrorCode 0 or Probability 0 switches it off (and drops addresses).

        ``addresses`` (the Agora extension) scopes a Sender or Recipient trigger to those
        addresses; empty means every address.
        """
        scoped = _check_addresses(name, addresses)
        if error_code == 0:
            error_code, probability = DEFAULT_CODES[name], 0
        if not 400 <= error_code <= 599:
            raise ChaosError("error code must be between 400 and 599")
        if not 0 <= probability <= 100:
            raise ChaosError("probability must be between 0 and 100")
        trigger = Trigger(error_code, probability, scoped if probability > 0 else ())
        self._triggers[name] = trigger
        return trigger

    def reset(self) -> None:
        """Switch every trigger off."""
        for name in TRIGGER_NAMES:
            self._triggers[name] = Trigger(DEFAULT_CODES[name], 0)

    def replace(self, body: object) -> None:
        """Apply a PUT /api/v1/chaos body; omitted triggers are switched off, as in Mailpit.

        The body is checked whole before anything changes: an invalid one raises ChaosError
        and leaves the current triggers as they were.
        """
        if not isinstance(body, dict):
            raise ChaosError("the body must be a JSON object")
        parsed: dict[TriggerName, tuple[int, int, tuple[str, ...]]] = {}
        for name in TRIGGER_NAMES:
            parsed[name] = _parse_trigger(name, json_field(body, name))
        staged = Chaos()
        for name, (code, probability, addresses) in parsed.items():
            staged.set(name, error_code=code, probability=probability, addresses=addresses)
        self._triggers = dict(staged._triggers)

    def fire(self, name: TriggerName, address: str | None = None) -> int | None:
        """Roll the dice for one command naming ``address``; return the code to answer, or None."""
        trigger = self._triggers[name]
        if trigger.probability <= 0 or not trigger.applies_to(address):
            return None
        # randbelow gives 0..99, so probability 100 always fires and 1 fires one time in 100.
        if secrets.randbelow(100) < trigger.probability:
            return trigger.error_code
        return None

    def to_json(self) -> dict[str, dict[str, int | list[str]]]:
        """Return the triggers as GET /api/v1/chaos shows them."""
        return {name: self._triggers[name].to_json() for name in TRIGGER_NAMES}


def _parse_trigger(name: TriggerName, value: object) -> tuple[int, int, tuple[str, ...]]:
    if value is None:
        return (0, 0, ())
    if not isinstance(value, dict):
        raise ChaosError(f"{name} must be an object with ErrorCode and Probability")
    code = json_field(value, "ErrorCode")
    probability = json_field(value, "Probability")
    return (
        _as_int(f"{name}.ErrorCode", code),
        _as_int(f"{name}.Probability", probability),
        _as_addresses(f"{name}.Addresses", json_field(value, "Addresses")),
    )


def _as_int(label: str, value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChaosError(f"{label} must be an integer")
    return value


def _as_addresses(label: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ChaosError(f"{label} must be a list of email addresses")
    return tuple(value)


def _check_addresses(name: TriggerName, addresses: Iterable[str]) -> tuple[str, ...]:
    """Validate the extension's addresses; return them without case-insensitive repeats."""
    kept: list[str] = []
    seen: set[str] = set()
    for address in addresses:
        if not _is_address(address):
            raise ChaosError(f"{name}.Addresses: {address!r} is not an email address")
        if address.casefold() not in seen:
            seen.add(address.casefold())
            kept.append(address)
    if kept and name not in ADDRESSED:
        raise ChaosError(f"{name} takes no Addresses: its SMTP command names no address")
    return tuple(kept)


def _is_address(address: object) -> bool:
    """A bare ``local@domain`` as RCPT TO / MAIL FROM carry it: no brackets, spaces or controls."""
    if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_LENGTH:
        return False
    if any(c.isspace() or not c.isprintable() or c in "<>" for c in address):
        return False
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain)
