"""What the chaos suite counts: owed emails (the databases) against delivered ones (the sink)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field

import httpx

from agora_deploy.chaos.stackctl import Stack

#: Kinds each fact owes (docs/reliability.md, "mail policy"): item mail only to an owner whose
#: address is verified.
REGISTRATION_KINDS = ("welcome", "email_verification")


@dataclass
class Result:
    """One scenario's reconciliation."""

    name: str
    facts: int = 0
    owed: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    #: Duplicates that share a Message-ID: the SMTP-accepted-then-crash window.
    same_message_id: int = 0
    unowed: int = 0
    #: Owed emails that stay dead letters by policy (a command's one-time token is not kept).
    dead_lettered: int = 0
    records_sent: int = 0
    failed_requests: int = 0
    recover_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """0 lost, 0 duplicated outside the documented window, no request failed for good."""
        return (
            self.lost == 0
            and self.duplicated == self.same_message_id
            and self.unowed == 0
            and self.failed_requests == 0
            and self.owed > 0
        )


ITEM_KINDS = ("item_listed",)


@dataclass(frozen=True)
class Owed:
    """What the databases say was committed."""

    emails: frozenset[tuple[str, str]]
    facts: int


async def owed_for(stack: Stack, tag: str) -> Owed:
    """Emails owed for the facts committed under ``tag`` (read from the services' databases)."""
    rows = await stack.fetch(
        "users",
        "SELECT id, email, email_verified FROM user_account WHERE email LIKE $1",
        f"%.{tag}@chaos.example",
    )
    by_id = {int(r["id"]): str(r["email"]) for r in rows}
    verified = {int(r["id"]) for r in rows if r["email_verified"]}
    owed = {(email, kind) for email in by_id.values() for kind in REGISTRATION_KINDS}
    listed = await stack.fetch(
        "items", "SELECT id, owner_id FROM item WHERE name LIKE $1", f"chaos item {tag} %"
    )
    for row in listed:
        owner = by_id.get(int(row["owner_id"]))
        if owner is not None and int(row["owner_id"]) in verified:
            owed.add((f"{owner}#item{row['id']}", ITEM_KINDS[0]))
    return Owed(frozenset(owed), facts=len(rows) + len(listed))


@dataclass(frozen=True)
class Delivered:
    """What the mail sink stored for ``tag``: (recipient, kind[, item]) -> Message-IDs."""

    copies: dict[tuple[str, str], list[str]]
    total: int


async def delivered_for(stack: Stack, tag: str) -> Delivered:
    """Every stored message addressed to the scenario's accounts, with its kind."""
    api = stack.component("mail").url
    copies: dict[tuple[str, str], list[str]] = {}
    total = 0
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        listing = (await client.get("/api/v1/messages", params={"limit": 1_000_000})).json()
        mine = [
            m
            for m in listing["messages"]
            if any(str(t["Address"]).endswith(f".{tag}@chaos.example") for t in m["To"])
        ]
        sem = asyncio.Semaphore(16)

        async def headers(msg_id: str) -> dict[str, list[str]]:
            async with sem:
                resp = await client.get(f"/api/v1/message/{msg_id}/headers")
                resp.raise_for_status()
                return dict(resp.json())

        all_headers = await asyncio.gather(*(headers(str(m["ID"])) for m in mine))
    for msg, head in zip(mine, all_headers, strict=True):
        kind = (head.get("X-Agora-Kind") or ["?"])[0]
        recipient = str(msg["To"][0]["Address"]).lower()
        if kind in ITEM_KINDS:
            recipient = f"{recipient}#item{_item_id(head)}"
        copies.setdefault((recipient, kind), []).append(str(msg["MessageID"]))
        total += 1
    return Delivered(copies, total)


def _item_id(headers: dict[str, list[str]]) -> str:
    """The item an item email is about (the X-Agora-Item-Id header, else its event id)."""
    for name in ("X-Agora-Item-Id", "X-Agora-Event-Id"):
        if headers.get(name):
            return headers[name][0]
    return "?"


VERIFICATION_COMMAND = "agora.users.command.send_email_verification.v1"


async def dead_lettered_commands(stack: Stack, tag: str) -> set[tuple[str, str]]:
    """Verification emails whose command is (or was) a dead letter: not replayable by design."""
    rows = await stack.fetch(
        "notifier",
        "SELECT convert_from(value, 'UTF8') AS doc FROM dead_letter"
        " WHERE event_type = $1 AND convert_from(value, 'UTF8') LIKE $2",
        VERIFICATION_COMMAND,
        f"%.{tag}@chaos.example%",
    )
    found = set()
    for row in rows:
        email = str(json.loads(row["doc"])["data"]["email"]).lower()
        found.add((email, "email_verification"))
    return found


async def dead_letters_of(stack: Stack, tag: str) -> int:
    """How many of the scenario's messages became dead letters at some point (any status)."""
    rows = await stack.fetch(
        "notifier",
        "SELECT count(*) FROM dead_letter WHERE convert_from(value, 'UTF8') LIKE $1",
        f"%.{tag}@chaos.example%",
    )
    return int(rows[0][0])


async def records_sent(stack: Stack, tag: str) -> int:
    """The notifier's own count: delivery records marked sent for the scenario's accounts."""
    rows = await stack.fetch(
        "notifier",
        "SELECT count(*) FROM delivery WHERE status = 'sent' AND recipient LIKE $1",
        f"%.{tag}@chaos.example",
    )
    return int(rows[0][0])


def reconcile(
    name: str,
    owed: Owed,
    delivered: Delivered,
    *,
    item_by_event: bool,
    dead_letters: frozenset[tuple[str, str]] = frozenset(),
) -> Result:
    """Compare owed and delivered, email by email."""
    result = Result(name=name, facts=owed.facts, owed=len(owed.emails))
    if item_by_event:
        # Item mail is told apart by item: match owed (owner#item<id>) by owner and count.
        owed_items = Counter(r.split("#", 1)[0] for r, k in owed.emails if k in ITEM_KINDS)
        got_items: Counter[str] = Counter()
        for (recipient, kind), ids in delivered.copies.items():
            if kind in ITEM_KINDS:
                got_items[recipient.split("#", 1)[0]] += len(set(ids))
                result.duplicated += len(ids) - len(set(ids))
                result.same_message_id += len(ids) - len(set(ids))
        for owner, n in owed_items.items():
            result.lost += max(0, n - got_items.get(owner, 0))
            result.duplicated += max(0, got_items.get(owner, 0) - n)
        result.unowed += sum(n for o, n in got_items.items() if o not in owed_items)
    for (recipient, kind), ids in delivered.copies.items():
        result.delivered += len(ids)
        if kind in ITEM_KINDS and item_by_event:
            continue
        if (recipient, kind) not in owed.emails:
            result.unowed += len(ids)
            continue
        extra = len(ids) - 1
        if extra > 0:
            result.duplicated += extra
            result.same_message_id += len(ids) - len(set(ids))
    for recipient, kind in owed.emails:
        if kind in ITEM_KINDS and item_by_event:
            continue
        if (recipient, kind) not in delivered.copies:
            if (recipient, kind) in dead_letters:
                result.dead_lettered += 1
            else:
                result.lost += 1
    return result
