"""Names and loaders of the committed artefacts shipped inside the package."""

import json
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

ASYNCAPI_FILE: Final = "asyncapi.json"
SCHEMAS_DIR: Final = "schemas"
EXAMPLES_DIR: Final = "examples"
ENVELOPE_SCHEMA: Final = "envelope"


def json_name(stem: str) -> str:
    """Return the file name of an artefact named after an event type (or `envelope`)."""
    return f"{stem}.json"


def render_json(document: Any) -> str:
    """Render a committed JSON artefact: two-space indent, UTF-8, trailing newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _package() -> Traversable:
    """Return the package directory as a resource tree (works inside a wheel or a zip)."""
    return resources.files("agora_contract")


def asyncapi_document() -> dict[str, Any]:
    """Return the committed AsyncAPI 3.0 document (what a service serves at /asyncapi.json)."""
    text = (_package() / ASYNCAPI_FILE).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document
