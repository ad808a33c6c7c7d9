"""``/health/live`` (wedged components) and ``/health/ready`` (database, Redis, extra checks)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.responses import JSONResponse, Response

from agora_kit.problems import problem_response

if TYPE_CHECKING:
    from agora_kit.runtime import AnyContext

logger = logging.getLogger("agora.health")


@dataclass(frozen=True, slots=True)
class ReadyCheck:
    """A named readiness probe; it raises (or times out) when the service cannot serve."""

    name: str
    check: Callable[[AnyContext], Awaitable[object]]


async def check_database(ctx: AnyContext) -> None:
    """Run ``SELECT 1`` on the service's own database."""
    async with ctx.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def check_redis(ctx: AnyContext) -> None:
    """``PING`` Redis."""
    await ctx.redis.ping()


DEFAULT_READY_CHECKS = (ReadyCheck("database", check_database), ReadyCheck("redis", check_redis))


async def _run(ctx: AnyContext, probe: ReadyCheck, timeout_s: float) -> str | None:
    """Return None when the probe passes, else a short reason (no connection strings)."""
    try:
        await asyncio.wait_for(probe.check(ctx), timeout=timeout_s)
    except TimeoutError:
        return f"timed out after {timeout_s:g}s"
    except Exception as exc:
        logger.warning("readiness check %s failed: %s: %s", probe.name, type(exc).__name__, exc)
        return type(exc).__name__
    return None


def health_router(ready_checks: Sequence[ReadyCheck]) -> APIRouter:
    """Return the router serving ``/health/live`` and ``/health/ready``."""
    router = APIRouter(prefix="/health", tags=["health"], include_in_schema=False)

    @router.get("/live")
    async def live(request: Request) -> Response:
        """Report whether every background component is alive (not wedged)."""
        ctx: AnyContext = request.app.state.ctx
        dead = [c.name for c in ctx.components if not c.is_alive()]
        if dead:
            return problem_response(
                request.scope,
                503,
                detail=f"Not alive: {', '.join(dead)}.",
                extra={"components": {c.name: c.name not in dead for c in ctx.components}},
            )
        return JSONResponse({"status": "alive", "components": [c.name for c in ctx.components]})

    @router.get("/ready")
    async def ready(request: Request) -> Response:
        """Report whether the service can answer requests (its database and Redis respond)."""
        ctx: AnyContext = request.app.state.ctx
        timeout_s = ctx.settings.health_timeout_s
        results = await asyncio.gather(*(_run(ctx, p, timeout_s) for p in ready_checks))
        checks = {p.name: reason or "ok" for p, reason in zip(ready_checks, results, strict=True)}
        failed = [name for name, outcome in checks.items() if outcome != "ok"]
        if failed:
            return problem_response(
                request.scope,
                503,
                detail=f"Not ready: {', '.join(failed)} unavailable.",
                headers={"Retry-After": str(ctx.settings.retry_after_s)},
                extra={"checks": checks},
            )
        return JSONResponse({"status": "ready", "checks": checks})

    return router
