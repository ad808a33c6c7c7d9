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
import contextlib
import json
import os
import re
import signal
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from agora_deploy.clirun import run_agora
from agora_deploy.launchers.process import free_port
from agora_deploy.stack import ComponentInfo, database_url, read_stack

PASSWORD = "chaos-Passw0rd-long-enough"  # noqa: S105 - a throwaway test account
#: Kinds each fact owes (docs/reliability.md, "mail policy"): item mail only to an owner whose
#: address is verified.
REGISTRATION_KINDS = ("welcome", "email_verification")
ITEM_KINDS = ("item_listed",)
#: The stack's limits raised for the load (the suite says so in its output).
STACK_ENV = {
    "GATEWAY_RATE_AVERAGE": "1000000",
    "GATEWAY_RATE_BURST": "1000000",
    "NOTIFIER_THROTTLE_LIMIT": "1000",
}
RETRYABLE = {429, 502, 503, 504}
#: Every ITEM_EVERY-th account of a scenario lists one item (after verifying its address).
ITEM_EVERY = 4


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


class Stack:
    """A supervised stack in its own AGORA_HOME, driven through the `agora` CLI."""

    def __init__(self, home: Path, *, workers: int = 1) -> None:
        self.home = home
        self.workers = workers
        self.gateway_port = free_port()
        #: The running scenario's tag (its accounts are ``u<i>.<tag>@chaos.example``).
        self.tag = ""

    def up(self) -> None:
        """`agora up --detach` (raises with its output when it fails)."""
        old = {k: os.environ.get(k) for k in STACK_ENV}
        os.environ.update(STACK_ENV)
        try:
            args = ["up", "--detach", "--gateway-port", str(self.gateway_port)]
            if self.workers > 1:
                args += ["--workers", str(self.workers)]
            done = run_agora(self.home, *args, timeout=300)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if done.returncode != 0:
            raise RuntimeError(f"agora up failed:\n{done.stdout}\n{done.stderr}")

    def down(self) -> None:
        """`agora down`."""
        run_agora(self.home, "down", timeout=180)

    def component(self, name: str) -> ComponentInfo:
        """The current stack.json entry of ``name``."""
        return {c.name: c for c in read_stack(self.home)}[name]

    def url_of(self, name: str) -> str | None:
        """The URL of ``name`` now, or None while the stack is being (re)started."""
        found = {c.name: c for c in read_stack(self.home)}.get(name)
        return found.url if found is not None and found.state == "running" else None

    @property
    def gateway(self) -> str:
        """The gateway's base URL (fixed across restarts)."""
        return f"http://127.0.0.1:{self.gateway_port}"

    def pid(self, name: str) -> int:
        """The live pid of ``name``."""
        pid = self.component(name).pid
        if pid is None:
            raise RuntimeError(f"{name} has no pid")
        return pid

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send ``sig`` to a component's process."""
        os.kill(self.pid(name), sig)

    async def freeze(self, name: str, seconds: float) -> None:
        """SIGSTOP a component for ``seconds``, then SIGCONT it."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    async def wait_running(self, names: tuple[str, ...], timeout: float = 120.0) -> None:
        """Wait until every named component runs (after a restart)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = {c.name: c for c in read_stack(self.home)}
            if all(n in now and now[n].state == "running" for n in names):
                return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"{names} not running again within {timeout}s")

    def db_url(self, database: str) -> str:
        """A plain asyncpg URL of one of the stack's databases."""
        return database_url(self.component("postgres").url, database, driver="postgresql")

    async def fetch(self, database: str, sql: str, *args: object) -> list[asyncpg.Record]:
        """Run one query on one of the stack's databases."""
        conn = await asyncpg.connect(self.db_url(database), timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


_TOKEN = re.compile(r"verify-email\?token=([^\s\"'<>&]+)")


async def _verification_token(mail: httpx.AsyncClient, api: str, email: str) -> str | None:
    """The token of the verification link mailed to ``email``, once it has arrived."""
    try:
        found = await mail.get(f"{api}/api/v1/search", params={"query": f"to:{email}"})
        found.raise_for_status()
        for summary in found.json()["messages"]:
            if "confirm your email" not in str(summary["Subject"]).lower():
                continue
            body = await mail.get(f"{api}/api/v1/message/{summary['ID']}")
            match = _TOKEN.search(str(body.json()["Text"]))
            if match:
                return urllib.parse.unquote(match.group(1))
    except (httpx.HTTPError, ValueError, KeyError):
        return None  # the sink is restarting: ask again
    return None


def account(index: int, tag: str) -> str:
    """The address of the load's ``index``-th account in a scenario."""
    return f"u{index}.{tag}@chaos.example"


def _title(resp: httpx.Response) -> str:
    """The problem title of an error response (its first bytes when it is not JSON)."""
    try:
        return str(resp.json().get("title", ""))
    except ValueError:
        return resp.text[:60]


def _retryable(resp: httpx.Response) -> bool:
    """What a well-behaved client retries: 429/502/503/504, and 409 with Retry-After."""
    if resp.status_code == 409:
        # An Idempotency-Key still in flight (the first attempt's process may have died).
        return "Retry-After" in resp.headers
    if resp.status_code == 404 and resp.text.strip() == "404 page not found":
        # Traefik's own answer while it loads its routes just after a start: every API
        # 404 of Agora is a problem+json body.
        return True
    return resp.status_code in RETRYABLE


class Load:
    """Registrations (and some item listings) through the gateway, retried as a client would."""

    def __init__(self, stack: Stack, tag: str, *, retry_budget_s: float = 120.0) -> None:
        self.stack = stack
        self.tag = tag
        self.retry_budget_s = retry_budget_s
        self.failed = 0
        self.sent = 0
        self.errors: Counter[str] = Counter()

    async def _request(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: object
    ) -> httpx.Response | None:
        deadline = time.monotonic() + self.retry_budget_s
        while True:
            try:
                resp = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
                resp = None
            if resp is not None and not _retryable(resp):
                return resp
            if resp is not None:
                self.errors[str(resp.status_code)] += 1
            if time.monotonic() > deadline:
                return None
            wait = 0.5
            if resp is not None and resp.headers.get("Retry-After", "").isdigit():
                wait = min(float(resp.headers["Retry-After"]), 5.0)
            await asyncio.sleep(wait)

    async def register(self, client: httpx.AsyncClient, index: int, *, with_item: bool) -> None:
        """One account (Idempotency-Key makes the retries safe), maybe one item."""
        email = account(index, self.tag)
        key = f"{self.tag}-{index}"
        self.sent += 1
        resp = await self._request(
            client,
            "POST",
            "/api/v1/users",
            json={"email": email, "password": PASSWORD, "name": f"Chaos {index}"},
            headers={"Idempotency-Key": key},
        )
        if resp is None or resp.status_code not in (201, 409):
            self.failed += 1
            detail = "gave up" if resp is None else f"{resp.status_code} {_title(resp)}"
            self.errors[f"register: {detail}"] += 1
            return
        if not with_item:
            return
        # Item mail goes to verified addresses only: follow the link, as the owner would.
        if not await self.verify(client, email):
            self.failed += 1
            return
        token = await self._request(
            client,
            "POST",
            "/api/v1/auth/token",
            data={"username": email, "password": PASSWORD, "grant_type": "password"},
        )
        if token is None or token.status_code != 200:
            self.failed += 1
            self.errors[f"login: {'gave up' if token is None else token.status_code}"] += 1
            return
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        item = await self._request(
            client,
            "POST",
            "/api/v1/items",
            json={"name": f"chaos item {self.tag} {index}", "price": "9.99"},
            headers={**bearer, "Idempotency-Key": f"{key}-item"},
        )
        if item is None or item.status_code != 201:
            self.failed += 1
            self.errors[f"item: {'gave up' if item is None else item.status_code}"] += 1

    async def verify(self, client: httpx.AsyncClient, email: str) -> bool:
        """Wait for the verification email in the sink and post its token."""
        deadline = time.monotonic() + self.retry_budget_s
        async with httpx.AsyncClient(timeout=10) as mail:
            while time.monotonic() < deadline:
                mail_api = self.stack.url_of("mail")  # it moves on `agora down`/`up`
                link = await _verification_token(mail, mail_api, email) if mail_api else None
                if link is not None:
                    resp = await self._request(
                        client, "POST", "/api/v1/auth/verify-email", json={"token": link}
                    )
                    if resp is not None and resp.status_code in (200, 204):
                        return True
                    self.errors[f"verify: {'gave up' if resp is None else resp.status_code}"] += 1
                    return False
                await asyncio.sleep(0.5)
        self.errors["verify: no verification email"] += 1
        return False

    async def run(self, count: int, rate: float, *, item_every: int = 0) -> None:
        """``count`` registrations at ``rate`` per second (open loop), all awaited."""
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(
            base_url=self.stack.gateway, timeout=10, limits=limits
        ) as client:
            tasks = []
            start = time.monotonic()
            for i in range(count):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                with_item = item_every > 0 and i % item_every == 0
                tasks.append(asyncio.create_task(self.register(client, i, with_item=with_item)))
            await asyncio.gather(*tasks)


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
