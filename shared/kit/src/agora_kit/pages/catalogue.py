"""The event catalogue as an HTML page, rendered from the contract's committed artefacts.

Topics, producers and consumers come from the AsyncAPI document (channels, operations and
their ``x-agora-*`` extensions); each event's fields from its JSON Schema
(``schemas/<type>.json``); each example from ``examples/<type>.json``.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from agora_contract import asyncapi_document
from agora_contract.artefacts import EXAMPLES_DIR, SCHEMAS_DIR, json_name


def _artefact(folder: str, event_type: str) -> dict[str, Any] | None:
    """Load ``<folder>/<event_type>.json`` from the installed contract package."""
    path = resources.files("agora_contract") / folder / json_name(event_type)
    if not path.is_file():
        return None
    document: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return document


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_text(schema: dict[str, Any]) -> str:
    """Describe a JSON Schema's type in a few words: ``string (date-time)``, ``Foo[]``."""
    if "$ref" in schema:
        return _ref_name(schema["$ref"])
    if "const" in schema:
        return f"const {json.dumps(schema['const'])}"
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    for combo in ("anyOf", "oneOf"):
        if combo in schema:
            return " | ".join(type_text(s) for s in schema[combo])
    kind = schema.get("type")
    if kind == "array":
        return f"{type_text(schema.get('items', {}))}[]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {type_text(schema['additionalProperties'])}"
    if kind is None:
        return "any JSON value"
    text = " | ".join(kind) if isinstance(kind, list) else str(kind)
    if "format" in schema:
        text += f" ({schema['format']})"
    return text


def _fields_table(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return '<p class="muted">No fields.</p>'
    required = set(schema.get("required", ()))
    rows = "".join(
        "<tr>"
        f"<td><code>{escape(name)}</code></td>"
        f"<td>{escape(type_text(prop))}</td>"
        f"<td>{'yes' if name in required else 'no'}</td>"
        f"<td>{escape(str(prop.get('description', '')))}</td>"
        "</tr>"
        for name, prop in props.items()
    )
    return (
        "<table><thead><tr><th>field</th><th>type</th><th>required</th><th>description</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _event_html(message: dict[str, Any]) -> str:
    event_type = str(message["name"])
    schema = _artefact(SCHEMAS_DIR, event_type) or {}
    example = _artefact(EXAMPLES_DIR, event_type)
    key = message.get("bindings", {}).get("kafka", {}).get("key", {}).get("description", "")
    private = any(t.get("name") == "private" for t in message.get("tags", ()))
    parts = [
        f'<div class="event" id="{escape(event_type)}">',
        f"<h3><code>{escape(event_type)}</code> {escape(str(message.get('title', '')))}"
        + (' <span class="tag private">private</span>' if private else "")
        + "</h3>",
        f"<p>{escape(str(message.get('summary', '')))}</p>",
        f'<p class="muted">Kafka key: {escape(str(key))}</p>',
        "<p><code>data</code> fields:</p>",
        _fields_table(schema),
    ]
    for name, sub in schema.get("$defs", {}).items():
        if sub.get("properties"):
            parts += [f"<p><code>{escape(name)}</code>:</p>", _fields_table(sub)]
    if example is not None:
        text = json.dumps(example, indent=2, ensure_ascii=False)
        parts += ["<details><summary>Example envelope</summary>", f"<pre>{escape(text)}</pre>"]
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def _topics(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Return each channel with its producer, consumers and messages, in document order."""
    ops = document.get("operations", {}).values()
    messages = document.get("components", {}).get("messages", {})
    topics = []
    for cid, channel in document.get("channels", {}).items():
        ref = f"#/channels/{cid}"
        send = [o for o in ops if o["channel"]["$ref"] == ref and o["action"] == "send"]
        receive = [o for o in ops if o["channel"]["$ref"] == ref and o["action"] == "receive"]
        topics.append(
            {
                "id": cid,
                "topic": channel["address"],
                "description": channel.get("description", ""),
                "partitions": channel.get("bindings", {}).get("kafka", {}).get("partitions"),
                "producers": [str(o.get("x-agora-producer", "")) for o in send],
                "consumers": [str(c) for o in receive for c in o.get("x-agora-consumers", ())],
                "notes": [str(o.get("summary", "")) for o in receive],
                "messages": [
                    messages[_ref_name(m["$ref"])] for m in channel.get("messages", {}).values()
                ],
            }
        )
    return topics


@cache
def render_catalogue_html() -> str:
    """Return the whole catalogue page (rendered once per process: the artefacts are fixed)."""
    document = asyncapi_document()
    info = document.get("info", {})
    topics = _topics(document)
    summary_rows = "".join(
        "<tr>"
        f'<td><a href="#{escape(t["id"])}"><code>{escape(t["topic"])}</code></a></td>'
        f"<td>{escape(', '.join(t['producers']) or '-')}</td>"
        f"<td>{escape(', '.join(t['consumers']) or 'none inside Agora')}</td>"
        f"<td>{escape(str(t['partitions']))}</td>"
        f"<td>{'<br>'.join(escape(str(m['name'])) for m in t['messages'])}</td>"
        "</tr>"
        for t in topics
    )
    sections = []
    for t in topics:
        consumers = ", ".join(t["consumers"]) or "none inside Agora"
        sections.append(
            f'<section id="{escape(t["id"])}">'
            f"<h2>Topic <code>{escape(t['topic'])}</code></h2>"
            f"<p>{escape(t['description'])}</p>"
            f"<p>Producer: <strong>{escape(', '.join(t['producers']))}</strong> · "
            f"consumers inside Agora: <strong>{escape(consumers)}</strong></p>"
            + "".join(f'<p class="muted">{escape(n)}</p>' for n in t["notes"])
            + "".join(_event_html(m) for m in t["messages"])
            + "</section>"
        )
    version = escape(str(info.get("version", "")))
    description = escape(str(info.get("description", "")))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Agora event catalogue</title>
<link rel="stylesheet" href="assets/pages.css">
</head>
<body>
<header>
  <nav class="crumbs"><a href="./">Agora</a> / events</nav>
  <h1>Event catalogue</h1>
  <p>Contract version {version}. {description}</p>
</header>
<main>
<section>
<h2>Topics</h2>
<table><thead><tr><th>topic</th><th>producer</th><th>consumers</th><th>partitions</th>
<th>event types</th></tr></thead><tbody>{summary_rows}</tbody></table>
<p class="muted">Rendered from the contract's AsyncAPI document and JSON Schemas; the same
document is served as <a href="users/asyncapi.json">asyncapi.json</a>. Every message is a
CloudEvents 1.0 envelope in structured JSON mode; the tables below are its <code>data</code>.</p>
</section>
{"".join(sections)}
</main>
</body>
</html>
"""
