"""What the emails say and link to: names, dates, changed fields for people, the links."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from agora_contract import (
    ItemUpdated,
)
from pydantic import JsonValue

from agora_notifier.projection import clean_name
from agora_notifier.rendering import clean_header_text

#: The greeting's name when none is known.
FALLBACK_NAME = "there"


REASONS = {
    "owner_request": "you deleted it.",
    "owner_deleted": "your account was deleted.",
}


LABELS = {
    "name": "Name",
    "description": "Description",
    "price": "Price",
    "currency": "Currency",
    "tags": "Tags",
    "status": "Status",
}


MAX_VALUE_CHARS = 80


@dataclass(frozen=True, slots=True)
class Links:
    """Builds the links in emails from the gateway's public URL."""

    public_url: str

    def base(self) -> str:
        """The public URL without a trailing slash."""
        return self.public_url.rstrip("/")

    def item(self, item_id: int) -> str:
        """The public page of an item."""
        return f"{self.base()}/items/{item_id}"

    def token(self, path: str, token: str) -> str:
        """A one-time link carrying ``token``."""
        return f"{self.base()}/{path}?token={quote(token, safe='')}"


def when(value: datetime) -> str:
    """Format an instant for people (UTC, minutes)."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _greet(name: str | None) -> str:
    cleaned = clean_name(name or "")
    return cleaned or FALLBACK_NAME


def _shown(value: JsonValue) -> str:
    if value is None or value == "" or value == []:
        return "(none)"
    text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
    text = clean_header_text(text, limit=MAX_VALUE_CHARS + 1)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def describe_changes(event: ItemUpdated, currency: str | None) -> list[dict[str, str]]:
    """The changed fields for people: prices with their currency, long texts shortened."""
    changes: list[dict[str, str]] = []
    new_currency = event.changes.get("currency")
    for name, change in sorted(event.changes.items(), key=lambda kv: (kv[0] != "price", kv[0])):
        old, new = _shown(change.old), _shown(change.new)
        if name == "price":
            old_cur = new_cur = currency or ""
            if new_currency is not None:
                old_cur, new_cur = str(new_currency.old or ""), str(new_currency.new or "")
            old, new = f"{old} {old_cur}".strip(), f"{new} {new_cur}".strip()
        changes.append(
            {"label": LABELS.get(name, name.replace("_", " ").capitalize()), "old": old, "new": new}
        )
    return changes
