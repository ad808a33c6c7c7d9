"""Short, human-readable descriptions of JSON Schema types, for the event catalogue."""

from collections.abc import Mapping
from typing import Any

_FORMATS = {"date-time": "RFC 3339 UTC time", "uuid": "UUID", "email": "e-mail address"}


def _ref_name(ref: str) -> str:
    """Return the definition name a `$ref` points at."""
    return ref.rsplit("/", 1)[-1]


def _bounds(schema: Mapping[str, Any]) -> str:
    """Describe numeric and length bounds worth telling a reader."""
    parts = []
    if "minimum" in schema:
        parts.append(f"≥ {schema['minimum']}")
    if "minLength" in schema and schema["minLength"] > 1:
        parts.append(f"{schema['minLength']}+ chars")
    if "minLength" in schema and schema["minLength"] == 1:
        parts.append("non-empty")
    if "minProperties" in schema:
        parts.append("non-empty")
    return f" ({', '.join(parts)})" if parts else ""


def describe(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """Return a one-line description of a JSON Schema, e.g. `integer (≥ 1)`."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        if name == "JsonValue":
            return "any JSON value"
        target = defs.get(name, {})
        fields = ", ".join(target.get("properties", {}))
        return f"object {{{fields}}}" if fields else name
    if "const" in schema:
        return f"`{schema['const']}`"
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    if "anyOf" in schema:
        options = [describe(option, defs) for option in schema["anyOf"]]
        return " or ".join(options)
    kind = schema.get("type")
    if kind == "array":
        return f"array of {describe(schema.get('items', {}), defs)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        value = describe(schema["additionalProperties"], defs)
        return f"object: field name → {value}{_bounds(schema)}"
    if kind == "string":
        text_format = schema.get("format")
        if text_format == "decimal":
            return "decimal string (≥ 0)"
        if text_format in _FORMATS:
            return f"string ({_FORMATS[text_format]})"
        return f"string{_bounds(schema)}"
    if kind == "integer":
        return f"integer{_bounds(schema)}"
    if kind == "object":
        return "object"
    if kind == "null":
        return "null"
    return str(kind) if kind else "any JSON value"
