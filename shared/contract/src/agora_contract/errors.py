"""Errors raised when a message does not fit the contract."""

from collections.abc import Sequence

from pydantic import ValidationError


class ContractError(ValueError):
    """A message that does not fit the Agora event contract."""


class UnknownEventType(ContractError):  # noqa: N818 - the name is part of the pinned API
    """An envelope whose `type` no model of this contract version knows."""

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


class InvalidEvent(ContractError):  # noqa: N818 - the name is part of the pinned API
    """Malformed JSON, an invalid envelope, or `data` that fails its event model."""

    def __init__(self, message: str, *, errors: Sequence[str] = ()) -> None:
        detail = f"{message}: {'; '.join(errors)}" if errors else message
        super().__init__(detail)
        self.errors = tuple(errors)

    @classmethod
    def from_validation(cls, message: str, exc: ValidationError) -> "InvalidEvent":
        """Build from a pydantic error, naming locations and reasons but never input values."""
        # Inputs are left out on purpose: they carry personal data into logs and dead letters.
        errors = [
            f"{'.'.join(str(part) for part in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        return cls(message, errors=errors)
