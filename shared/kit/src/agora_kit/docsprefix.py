"""Serve Swagger UI and ReDoc correctly behind the gateway's ``/<service>`` docs prefix."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

#: The only paths whose ``root_path`` may come from ``X-Forwarded-Prefix``.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class DocsPrefixMiddleware:
    """Set ``root_path`` from ``X-Forwarded-Prefix`` on the docs paths only.

    The gateway serves each service's docs under ``/users/docs`` and so on, stripping the
    prefix and sending it in ``X-Forwarded-Prefix``. FastAPI's docs pages build the OpenAPI
    URL from ``root_path``; honouring the header for the docs paths alone means a client that
    sends it cannot change how API routes resolve.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, with ``root_path`` set for a prefixed docs request."""
        if scope["type"] == "http" and scope.get("path") in DOCS_PATHS:
            prefix = _forwarded_prefix(scope)
            if prefix:
                scope = {**scope, "root_path": prefix}
        await self.app(scope, receive, send)


def _forwarded_prefix(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-prefix":
            prefix = bytes(value).decode("latin-1").strip().rstrip("/")
            # A path segment or two of plain characters: anything else is ignored.
            ok = prefix.startswith("/") and len(prefix) <= 64
            if ok and all(c.isalnum() or c in "/-_" for c in prefix):
                return prefix
    return None
