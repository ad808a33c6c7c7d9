"""The faults of the chaos suite, each a coroutine over a running supervised stack."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import psutil
from aiokafka import AIOKafkaProducer

from agora_deploy.chaos.harness import ITEM_EVERY
from agora_deploy.chaos.load import account
from agora_deploy.chaos.stackctl import Stack
from agora_deploy.clirun import run_agora


@dataclass(frozen=True)
class Scenario:
    """A named fault, and what runs after the load (before the drain)."""

    name: str
    fault: Callable[[Stack], Awaitable[None]]
    after: Callable[[Stack], Awaitable[None]] | None = None
    count: int = 60
    ci: bool = False
    #: uvicorn workers per service in the stack this scenario needs.
    workers: int = 1


async def _kill(stack: Stack, name: str, times: int = 1, gap_s: float = 1.5) -> None:
    for i in range(times):
        stack.kill(name)
        if i + 1 < times:
            await stack.wait_running((name,))
            await asyncio.sleep(gap_s)


async def notifier_kills(stack: Stack) -> None:
    """SIGKILL the notifier three times during the burst."""
    await _kill(stack, "notifier", times=3)


async def users_kill(stack: Stack) -> None:
    """SIGKILL the users service (its relay) mid-publish."""
    await _kill(stack, "users")


async def items_kill(stack: Stack) -> None:
    """SIGKILL the items service (its relay and its consumer) mid-publish."""
    await asyncio.sleep(1.0)
    await _kill(stack, "items")


async def broker_kill(stack: Stack) -> None:
    """SIGKILL the broker (the supervisor restarts it on its durable storage)."""
    await _kill(stack, "kafka")


async def broker_freeze(stack: Stack) -> None:
    """SIGSTOP the broker for 10 s."""
    await stack.freeze("kafka", 10.0)


async def postgres_kill(stack: Stack) -> None:
    """SIGKILL PostgreSQL (crash recovery on restart)."""
    await _kill(stack, "postgres")


async def redis_kill(stack: Stack) -> None:
    """SIGKILL Redis."""
    await _kill(stack, "redis")


async def _smtp_fault(
    stack: Stack, code: int, seconds: float, addresses: list[str] | None = None
) -> None:
    """Once mail flows, the SMTP server answers ``code`` (to ``addresses``, or all)."""
    api = stack.component("mail").url
    async with httpx.AsyncClient(base_url=api, timeout=5) as client:
        await _mail_flowing(client)
        trigger: dict[str, object] = {"ErrorCode": code, "Probability": 100}
        if addresses:
            trigger["Addresses"] = addresses  # the embedded sink's extension
        on = {"Recipient": trigger}
        (await client.put("/api/v1/chaos", json=on)).raise_for_status()
        try:
            await asyncio.sleep(seconds)
        finally:
            off = {"Recipient": {"ErrorCode": 0, "Probability": 0}}
            (await client.put("/api/v1/chaos", json=off)).raise_for_status()


async def smtp_refuses(stack: Stack) -> None:
    """The SMTP server answers 451 (try later) for 10 s."""
    await _smtp_fault(stack, 451, 10.0)


async def _mail_flowing(client: httpx.AsyncClient, timeout_s: float = 30.0) -> None:
    """Wait until the sink receives a new message (the burst's mail has started)."""

    async def total() -> int:
        return int((await client.get("/api/v1/messages", params={"limit": 1})).json()["total"])

    start = await total()
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await total() == start:
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError("no mail flowed within the scenario's first 30 s")
        await asyncio.sleep(0.1)


async def smtp_rejects(stack: Stack) -> None:
    """The SMTP server answers 550 (permanent failure) for 3 s to the accounts listing nothing.

    Their verification emails stay dead letters by policy (a command's token is not kept);
    the owners who list items need theirs to verify, so the fault spares them.
    """
    spared = {account(i, stack.tag) for i in range(0, 60, ITEM_EVERY)}
    hit = [account(i, stack.tag) for i in range(60) if account(i, stack.tag) not in spared]
    await _smtp_fault(stack, 550, 3.0, addresses=hit)


async def replay_dead_letters(stack: Stack) -> None:
    """What an operator does after a 5xx storm: `agora dlq replay --all-pending`."""
    await asyncio.sleep(5.0)  # let the last in-flight failures land as dead letters
    done = await asyncio.to_thread(run_agora, stack.home, "dlq", "replay", "--all-pending")
    if done.returncode != 0:
        raise RuntimeError(f"dlq replay failed: {done.stdout}{done.stderr}")


async def smtp_down(stack: Stack) -> None:
    """The SMTP server frozen (SIGSTOP) for 30 s: connections hang, then time out."""
    await stack.freeze("mail", 30.0)


async def poison(stack: Stack) -> None:
    """Malformed and unknown events on every consumed topic, in the middle of the burst."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.component("kafka").url, acks="all")
    await producer.start()
    try:
        bad = [
            b"not json",
            b'{"specversion": "1.0"}',
            b'{"specversion":"1.0","id":"%s","source":"/x","type":"agora.nope.v9",'
            b'"subject":"1","time":"2026-01-01T00:00:00Z","data":{}}' % uuid.uuid4().hex.encode(),
        ]
        for topic in ("users.events", "items.events", "notifier.commands"):
            for i, value in enumerate(bad):
                await producer.send_and_wait(topic, value, key=str(i).encode())
    finally:
        await producer.stop()


async def notifier_worker_kill(stack: Stack) -> None:
    """Two notifier workers share the group; SIGKILL one mid-stream (rebalance, respawn)."""
    master = psutil.Process(stack.pid("notifier"))
    for _ in range(2):
        workers = [p for p in master.children() if p.is_running()]
        if len(workers) < 2:
            raise RuntimeError(f"expected 2 notifier workers, found {len(workers)}")
        workers[0].send_signal(signal.SIGKILL)
        await asyncio.sleep(2.0)


async def down_up(stack: Stack) -> None:
    """A full `agora down` then `agora up` in the middle of the flow."""
    await asyncio.to_thread(stack.down)
    await asyncio.to_thread(stack.up)


async def rolling_restart(stack: Stack) -> None:
    """SIGTERM each service in turn (`agora restart`), under load."""
    for name in ("users", "items", "notifier"):
        stack.kill(name, signal.SIGTERM)
        await stack.wait_running((name,))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("notifier SIGKILL x3 mid-burst", notifier_kills, ci=True),
    Scenario("users SIGKILL mid-publish", users_kill, ci=True),
    Scenario("items SIGKILL mid-publish", items_kill),
    Scenario("broker SIGKILL", broker_kill, ci=True),
    Scenario("broker SIGSTOP 10 s", broker_freeze),
    Scenario("postgres SIGKILL", postgres_kill),
    Scenario("redis SIGKILL", redis_kill),
    Scenario("SMTP 451 for 10 s", smtp_refuses),
    Scenario("SMTP 550 for 3 s, dead letters replayed", smtp_rejects, replay_dead_letters),
    Scenario("SMTP down (frozen) 30 s", smtp_down),
    Scenario("poison events on every topic", poison),
    Scenario("rolling SIGTERM of each service", rolling_restart),
    Scenario("agora down / up mid-flow", down_up),
    Scenario("two notifier workers, one SIGKILLed twice", notifier_worker_kill, workers=2),
)
