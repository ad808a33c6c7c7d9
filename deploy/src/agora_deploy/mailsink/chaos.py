"""Mailpit's chaos triggers: make the SMTP server fail MAIL, RCPT or AUTH on purpose."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
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


class ChaosError(ValueError):
    """A chaos configuration that Mailpit would refuse."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """One fault: the SMTP code to answer and the percentage of commands that get it."""

    error_code: int
    probability: int

    def to_json(self) -> dict[str, int]:
        """Return Mailpit's JSON form of a trigger."""
        return {"ErrorCode": self.error_code, "Probability": self.probability}


class Chaos:
    """The current triggers; read by the SMTP handler on every command, set by the API."""

    def __init__(self) -> None:
        self._triggers: dict[TriggerName, Trigger] = {
            name: Trigger(DEFAULT_CODES[name], 0) for name in TRIGGER_NAMES
        }

    def get(self, name: TriggerName) -> Trigger:
        """Return the trigger for one SMTP stage."""
        return self._triggers[name]

    def set(self, name: TriggerName, *, error_code: int, probability: int) -> Trigger:
        """Set one trigger; ErrorCode 0 or Probability 0 switches it off."""
        if error_code == 0:
            error_code, probability = DEFAULT_CODES[name], 0
        if not 400 <= error_code <= 599:
            raise ChaosError("error code must be between 400 and 599")
        if not 0 <= probability <= 100:
            raise ChaosError("probability must be between 0 and 100")
        trigger = Trigger(error_code, probability)
        self._triggers[name] = trigger
        return trigger

    def reset(self) -> None:
        """Switch every trigger off."""
        for name in TRIGGER_NAMES:
            self._triggers[name] = Trigger(DEFAULT_CODES[name], 0)

    def replace(self, body: object) -> None:
        """Apply a PUT /api/v1/chaos body; omitted triggers are switched off, as in Mailpit."""
        if not isinstance(body, dict):
            raise ChaosError("the body must be a JSON object")
        parsed: dict[TriggerName, tuple[int, int]] = {}
        for name in TRIGGER_NAMES:
            parsed[name] = _parse_trigger(name, json_field(body, name))
        staged = Chaos()
        for name, (code, probability) in parsed.items():
            staged.set(name, error_code=code, probability=probability)
        self._triggers = dict(staged._triggers)

    def fire(self, name: TriggerName) -> int | None:
        """Roll the dice for one command; return the error code to answer, or None."""
        trigger = self._triggers[name]
        if trigger.probability <= 0:
            return None
        # randbelow gives 0..99, so probability 100 always fires and 1 fires one time in 100.
        if secrets.randbelow(100) < trigger.probability:
            return trigger.error_code
        return None

    def to_json(self) -> dict[str, dict[str, int]]:
        """Return the triggers as GET /api/v1/chaos shows them."""
        return {name: self._triggers[name].to_json() for name in TRIGGER_NAMES}


def _parse_trigger(name: str, value: object) -> tuple[int, int]:
    if value is None:
        return (0, 0)
    if not isinstance(value, dict):
        raise ChaosError(f"{name} must be an object with ErrorCode and Probability")
    code = json_field(value, "ErrorCode")
    probability = json_field(value, "Probability")
    return (_as_int(f"{name}.ErrorCode", code), _as_int(f"{name}.Probability", probability))


def _as_int(label: str, value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChaosError(f"{label} must be an integer")
    return value
