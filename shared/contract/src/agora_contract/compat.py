"""Checks that a committed example envelope is still accepted, unchanged, by the contract."""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from agora_contract.envelope import Envelope
from agora_contract.errors import ContractError
from agora_contract.registry import EVENT_TYPES, decode


def _differences(label: str, original: Mapping[str, Any], reread: Mapping[str, Any]) -> list[str]:
    """Name the keys of `original` that `reread` lost or reads differently."""
    lost = [key for key in original if key not in reread]
    changed = [key for key in original if key in reread and reread[key] != original[key]]
    problems = []
    if lost:
        problems.append(f"{label} fields no longer in the contract: {', '.join(lost)}")
    if changed:
        problems.append(f"{label} fields read differently now: {', '.join(changed)}")
    return problems


def example_problems(event_type: str, document: Any) -> list[str]:
    """Return why a committed example of `event_type` is no longer accepted (empty if it is)."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        return ["no model has this type: removing an event type is a breaking change"]
    try:
        envelope = Envelope.model_validate(document)
        event = decode(envelope)
    except ValidationError as exc:
        return [f"not a valid envelope ({exc.error_count()} errors)"]
    except ContractError as exc:
        return [str(exc)]
    problems = []
    if envelope.type != event_type:
        problems.append(f"its type is {envelope.type!r}, not {event_type!r}")
    expected_subject = str(getattr(event, model.key_field))
    if envelope.subject != expected_subject:
        problems.append(f"subject {envelope.subject!r} is not the {model.key_field}")
    problems += _differences("envelope", document, envelope.to_dict())
    problems += _differences("data", envelope.data, event.model_dump(mode="json"))
    return problems
