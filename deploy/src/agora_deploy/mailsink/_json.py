"""Reading JSON request bodies with Go's encoding/json rules, which Mailpit's API follows."""

from __future__ import annotations

from collections.abc import Mapping


def json_field(obj: Mapping[str, object], name: str) -> object:
    """Look a key up as Go does: the exact name first, then any spelling that differs in case."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None
