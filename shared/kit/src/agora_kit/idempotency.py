"""``Idempotency-Key`` on POST as pure ASGI middleware, with the responses kept in Redis.

Why middleware and not a dependency: only middleware sees the whole response (status,
headers, body) to store it, and it runs before the body is parsed, so a replay never
executes the route again.

Per request with a key (POST only, never under an excluded prefix such as ``/api/v1/auth``):

1. The caller is the token's user (``user:<id>``), else the client address (``addr:<ip>``;
   behind the gateway run uvicorn with ``--proxy-headers`` so that is the real client).
2. A Lua script claims ``agora:idempotency:<service>:<caller>:<sha256(key)>`` atomically with a
   short-lived "processing" marker holding the request fingerprint (method, path, query,
   body) — or returns what is already there:
   a stored response with the same fingerprint is replayed (``Idempotent-Replayed: true``);
   another fingerprint gets 422; the same fingerprint still processing gets 409.
3. The route's response streams to the client as usual and is captured. Deterministic
   outcomes are stored for ``idempotency_ttl_s``; 5xx and transient 4xx (401, 403, 408, 409,
   425, 429) release the claim instead, so a retry runs again.

Redis calls are shielded so a client disconnect cannot cancel a claim/store half-way
(redis-py #2624). The marker lives ``idempotency_lock_ttl_s`` (10 s) and is extended every third
of that while its request runs, so a long request keeps its key while a crashed worker's claim
lapses within seconds and the client's retry runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Sequence

from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agora_kit._aio import shielded
from agora_kit.auth_deps import authenticate
from agora_kit.error_handlers import domain_problem
from agora_kit.errors import DomainError, Unauthorized
from agora_kit.idempotency_store import (
    IdempotencyStore,
    Stored,
)
from agora_kit.problems import problem_response

logger = logging.getLogger("agora.idempotency")

HEADER = b"idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: Responses whose outcome can change on retry: never replayed.
_TRANSIENT = frozenset({401, 403, 408, 409, 425, 429})
#: Response headers that belong to one delivery, not to the stored outcome.
_NOT_STORED = frozenset(
    {b"x-request-id", b"x-process-time", b"date", b"server", b"set-cookie", b"content-length"}
)
_MAX_STORED_BODY = 1_048_576


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1")):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


class IdempotencyMiddleware:
    """Replay the stored response of a POST repeated with the same ``Idempotency-Key``."""

    def __init__(self, app: ASGIApp, *, exclude_prefixes: Sequence[str]) -> None:
        self.app = app
        self.exclude_prefixes = tuple(p.rstrip("/") for p in exclude_prefixes)

    def _applies(self, scope: Scope) -> bool:
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        path: str = scope["path"]
        return not any(path == p or path.startswith(p + "/") for p in self.exclude_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
        key = _header(scope, HEADER) if self._applies(scope) else None
        if key is None or ctx is None:
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(key):
            detail = "Idempotency-Key must be 1-255 visible ASCII characters."
            await problem_response(scope, 400, detail=detail)(scope, receive, send)
            return
        settings = ctx.settings
        try:
            principal = await authenticate(
                scope.setdefault("state", {}), ctx.verifier, _header(scope, b"authorization")
            )
        except Unauthorized:
            principal = None  # the route answers 401 itself; that answer is never stored
        except DomainError as exc:
            response = domain_problem(scope, exc, retry_after_s=settings.retry_after_s)
            await response(scope, receive, send)
            return
        client = scope.get("client")
        caller = (
            f"user:{principal.user_id}" if principal else f"addr:{client[0] if client else '-'}"
        )
        body, more = await _read_body(receive)
        if more is not None:
            return  # the client went away while sending its body
        fingerprint = _fingerprint(scope, body)
        redis_key = (
            f"agora:idempotency:{settings.service_name}:{caller}:"
            f"{hashlib.sha256(key.encode()).hexdigest()}"
        )
        store = IdempotencyStore(
            ctx.redis, ttl_s=settings.idempotency_ttl_s, lock_ttl_s=settings.idempotency_lock_ttl_s
        )
        try:
            outcome, value = await shielded(store.claim(redis_key, fingerprint))
        except (RedisError, OSError) as exc:
            logger.warning("idempotency store unavailable: %s: %s", type(exc).__name__, exc)
            response = problem_response(
                scope,
                503,
                detail="The idempotency store is unavailable; retry later.",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
            await response(scope, receive, send)
            return
        if outcome == "mismatch":
            detail = "This Idempotency-Key was used with a different request."
            await problem_response(scope, 422, detail=detail)(scope, receive, send)
            return
        if outcome == "processing":
            detail = "A request with this Idempotency-Key is still being processed."
            response = problem_response(scope, 409, detail=detail, headers={"Retry-After": "1"})
            await response(scope, receive, send)
            return
        if outcome == "replay":
            await _replay(value, send)
            return
        await self._run(scope, receive, send, body, store, redis_key, value, fingerprint)

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        store: IdempotencyStore,
        redis_key: str,
        marker: str,
        fingerprint: str,
    ) -> None:
        """Run the route once, capture its response, then store it or release the claim."""
        sent_body = False
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0

        async def replay_receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def capture_send(message: Message) -> None:
            nonlocal status, headers, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size <= _MAX_STORED_BODY:
                    chunks.append(chunk)
            await send(message)

        keeper = asyncio.create_task(store.keep_alive(redis_key, marker))
        try:
            await self.app(scope, replay_receive, capture_send)
        except BaseException:
            await _release(store, redis_key, marker)
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if status and status < 500 and status not in _TRANSIENT and size <= _MAX_STORED_BODY:
            kept = [(k, v) for k, v in headers if k.lower() not in _NOT_STORED]
            outcome = Stored(status, kept, b"".join(chunks))
            try:
                await shielded(store.complete(redis_key, marker, fingerprint, outcome))
                return
            except (RedisError, OSError) as exc:
                logger.warning(
                    "could not store idempotent response: %s: %s", type(exc).__name__, exc
                )
        await _release(store, redis_key, marker)


async def _release(store: IdempotencyStore, redis_key: str, marker: str) -> None:
    try:
        await shielded(store.release(redis_key, marker))
    except (RedisError, OSError) as exc:
        # The marker expires on its own after idempotency_lock_ttl_s.
        logger.warning("could not release idempotency claim: %s", exc)


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """Read the whole request body; return the disconnect message if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", message
        chunks.append(bytes(message.get("body", b"")))
        if not message.get("more_body", False):
            return b"".join(chunks), None


async def _replay(stored: Stored, send: Send) -> None:
    body = stored.body
    headers = [
        *stored.headers,
        (b"content-length", str(len(body)).encode()),
        (REPLAYED_HEADER.lower().encode(), b"true"),
    ]
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
