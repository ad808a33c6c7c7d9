"""Fault injection with reconciliation: load through the gateway, a fault, then count every email.

A scenario drives registrations (and item listings) through the gateway of a supervised stack
(`agora up --detach`), injects one fault in the middle of the burst, waits until the system
has drained, then reconciles:

- **owed**: from the databases, the truth of what was committed: every registered account
  owes a welcome and a verification email; every listed item owes its owner an
  "item listed" email if the owner's address is verified (the mail policy
  of docs/reliability.md; no preference, throttle or per-address bound is hit by this load);
- **delivered**: every message stored by the mail sink, grouped by (recipient, kind). Two
  stored copies of one email count as a duplicate even when they share a Message-ID; those
  that do are reported apart (the one window no system closes: SMTP accepted, the process
  died before its mark);
- **records**: the notifier's delivery records, a second and independent count.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from agora_deploy.chaos.load import Load
from agora_deploy.chaos.reconcile import (
    ITEM_KINDS,
    Result,
    dead_lettered_commands,
    dead_letters_of,
    delivered_for,
    owed_for,
    reconcile,
    records_sent,
)
from agora_deploy.chaos.stackctl import Stack

#: Every ITEM_EVERY-th account of a scenario lists one item (after verifying its address).
ITEM_EVERY = 4


Fault = Callable[[Stack], Awaitable[None]]


async def run_scenario(
    stack: Stack,
    name: str,
    fault: Fault,
    *,
    count: int = 60,
    rate: float = 20.0,
    item_every: int = ITEM_EVERY,
    fault_after_s: float = 1.0,
    drain_timeout_s: float = 240.0,
    after: Fault | None = None,
) -> Result:
    """Load, a fault mid-burst, drain, reconcile."""
    tag = f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')[:24]}-{uuid.uuid4().hex[:6]}"
    stack.tag = tag
    load = Load(stack, tag)
    load_task = asyncio.create_task(load.run(count, rate, item_every=item_every))
    await asyncio.sleep(fault_after_s)
    await fault(stack)
    fault_done = time.monotonic()
    await load_task
    if after is not None:
        await after(stack)
    # Drain: until every owed email is there and nothing new came for a few seconds.
    deadline = time.monotonic() + drain_timeout_s
    last_total, stable_since, recovered_at = -1, time.monotonic(), 0.0
    owed = await owed_for(stack, tag)
    while time.monotonic() < deadline:
        owed = await owed_for(stack, tag)
        got = await delivered_for(stack, tag)
        waiting = await dead_lettered_commands(stack, tag)
        complete = all(
            key in got.copies or key in waiting for key in owed.emails if key[1] not in ITEM_KINDS
        )
        item_mail = sum(len(v) for k, v in got.copies.items() if k[1] in ITEM_KINDS)
        complete = complete and item_mail >= sum(1 for k in owed.emails if k[1] in ITEM_KINDS)
        if complete and not recovered_at:
            recovered_at = time.monotonic()
        if got.total != last_total:
            last_total, stable_since = got.total, time.monotonic()
        if complete and time.monotonic() - stable_since >= 5.0:
            break
        await asyncio.sleep(1.0)
    delivered = await delivered_for(stack, tag)
    parked = frozenset(await dead_lettered_commands(stack, tag))
    result = reconcile(name, owed, delivered, item_by_event=True, dead_letters=parked)
    result.records_sent = await records_sent(stack, tag)
    letters = await dead_letters_of(stack, tag)
    if letters:
        result.notes.append(f"dead letters along the way: {letters}")
    result.failed_requests = load.failed
    result.recover_s = round(max(0.0, (recovered_at or time.monotonic()) - fault_done), 1)
    if load.errors:
        result.notes.append("client saw: " + ", ".join(f"{k} x{v}" for k, v in load.errors.items()))
    return result


def table(results: list[Result]) -> str:
    """The Markdown table of docs/reliability.md."""
    head = (
        "| scenario | facts | emails owed | delivered | lost | duplicated | "
        "dup. same Message-ID (window) | dead letter by policy | delivery records sent | "
        "failed requests | recovered in (s) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = "".join(
        f"| {r.name} | {r.facts} | {r.owed} | {r.delivered} | {r.lost} | "
        f"{r.duplicated - r.same_message_id} | {r.same_message_id} | {r.dead_lettered} | "
        f"{r.records_sent} | "
        f"{r.failed_requests} | {r.recover_s} |\n"
        for r in results
    )
    return head + rows


def dump(results: list[Result]) -> str:
    """The results as JSON (kept beside the table)."""
    return json.dumps([r.__dict__ for r in results], indent=2, default=str)
