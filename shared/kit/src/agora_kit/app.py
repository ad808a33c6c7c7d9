"""The service app factory: the lifespan builds the clients and the runtime, then tears down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
from agora_contract import asyncapi_document
from fastapi import APIRouter, FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agora_kit import tracing
from agora_kit.auth import JwksFetcher, JwtVerifier
from agora_kit.db import create_engine, create_session_factory
from agora_kit.docsprefix import DocsPrefixMiddleware
from agora_kit.error_handlers import install_error_handlers
from agora_kit.health import DEFAULT_READY_CHECKS, ReadyCheck, health_router
from agora_kit.idempotency import REPLAYED_HEADER, IdempotencyMiddleware
from agora_kit.inputs import InputGuardMiddleware
from agora_kit.logging import configure_logging
from agora_kit.metrics import HttpMetrics, create_registry, metrics_endpoint
from agora_kit.middleware import RequestContextMiddleware
from agora_kit.openapi import truthful_openapi
from agora_kit.pages import install_pages
from agora_kit.problems import Problem
from agora_kit.redis import create_redis
from agora_kit.runtime import (
    Bootstrap,
    NoRuntime,
    Platform,
    RuntimeT,
    ServiceContext,
    ServiceRuntime,
    SettingsT,
)
from agora_kit.version import package_version

logger = logging.getLogger("agora.app")

API_PREFIX = "/api/v1"


__all__ = ["API_PREFIX", "ServiceContext", "create_service_app"]


async def _bounded(name: str, close: Callable[[], Awaitable[object]], timeout_s: float) -> None:
    """Await one teardown step with a timeout; log failures so the rest still runs."""
    try:
        await asyncio.wait_for(close(), timeout=timeout_s)
    except TimeoutError:
        logger.error("shutdown of %s timed out after %ss", name, timeout_s)
    except Exception:
        logger.exception("shutdown of %s failed", name)


def _lifespan(
    settings: SettingsT,
    bootstrap: Bootstrap[SettingsT, RuntimeT] | None,
    jwks_fetcher: Callable[[RuntimeT], JwksFetcher] | None,
) -> Callable[[FastAPI], Any]:
    timeout_s = settings.shutdown_timeout_s

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)
        async with AsyncExitStack() as stack:
            engine = create_engine(settings)
            tracing.instrument_engine(engine)
            stack.push_async_callback(_bounded, "database engine", engine.dispose, timeout_s)
            redis = create_redis(settings)
            stack.push_async_callback(_bounded, "redis", redis.aclose, timeout_s)
            http = httpx.AsyncClient(
                timeout=httpx.Timeout(settings.http_timeout_s), follow_redirects=False
            )
            stack.push_async_callback(_bounded, "http client", http.aclose, timeout_s)
            platform = Platform(
                settings=settings,
                engine=engine,
                session_factory=create_session_factory(engine),
                redis=redis,
                http=http,
                registry=create_registry(),
            )
            runtime: ServiceRuntime = NoRuntime()
            fetch_jwks: JwksFetcher | None = None
            if bootstrap is not None:
                built = bootstrap(platform)
                runtime = built
                if jwks_fetcher is not None:
                    fetch_jwks = jwks_fetcher(built)
            ctx = ServiceContext(
                settings=settings,
                engine=engine,
                session_factory=platform.session_factory,
                redis=redis,
                http=http,
                registry=platform.registry,
                verifier=JwtVerifier.from_settings(
                    settings, redis=redis, http=http, fetch_jwks=fetch_jwks
                ),
                http_metrics=HttpMetrics(platform.registry),
                runtime=runtime,
            )
            app.state.ctx = ctx
            for component in runtime.components:
                await component.start()
                ctx.components.append(component)
                stack.push_async_callback(
                    _bounded, f"component {component.name}", component.stop, timeout_s
                )
            logger.info(
                "service started",
                extra={"service": settings.service_name, "env": settings.env.value},
            )
            yield
            logger.info("service stopping", extra={"service": settings.service_name})

    return lifespan


def create_service_app(
    settings: SettingsT,
    *,
    title: str,
    version: str | None = None,
    routers: Sequence[APIRouter] = (),
    bootstrap: Bootstrap[SettingsT, RuntimeT] | None = None,
    openapi_tags: list[dict[str, Any]] | None = None,
    ready_checks: Sequence[ReadyCheck] = (),
    description: str = "",
    api_prefix: str = API_PREFIX,
    idempotency_exclude: Sequence[str] | None = None,
    jwks_fetcher: Callable[[RuntimeT], JwksFetcher] | None = None,
) -> FastAPI:
    """Build a service app; nothing connects until the lifespan starts.

    ``routers`` are mounted under ``api_prefix`` (``/api/v1``): give them paths like
    ``/items``, not ``/api/v1/items``. ``bootstrap(platform)`` builds the service's frozen
    runtime from the kit's clients; its ``components`` (relay, consumer) start in that order
    and stop in reverse, and the runtime is ``ctx.runtime``. ``ready_checks`` run after the
    built-in database and Redis checks. ``idempotency_exclude`` defaults to
    ``<api_prefix>/auth``. ``jwks_fetcher(runtime)`` replaces the HTTP JWKS fetch (the users
    service serves its own keys in-process). ``version`` defaults to the installed version of
    the service's distribution, ``agora-<service_name>``.
    """
    if version is None:
        version = package_version(f"agora-{settings.service_name}")
    tracing.setup(settings.service_name)
    middleware: list[Middleware] = [Middleware(DocsPrefixMiddleware)]
    if settings.cors_origins:
        exposed = ["X-Request-ID", "Retry-After", "ETag", "Location", REPLAYED_HEADER]
        if settings.show_process_time:
            exposed.append("X-Process-Time")
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Idempotency-Key",
                    "If-Match",
                    "If-None-Match",
                    "X-Request-ID",
                    "traceparent",
                ],
                expose_headers=exposed,
                max_age=600,
            )
        )
    middleware.append(
        Middleware(
            RequestContextMiddleware,
            show_process_time=settings.show_process_time,
            retry_after_s=settings.retry_after_s,
        )
    )
    # Inside the request context (its 422s carry the request id), before idempotency stores them.
    middleware.append(Middleware(InputGuardMiddleware, max_body_bytes=settings.max_body_bytes))
    exclude = idempotency_exclude if idempotency_exclude is not None else [f"{api_prefix}/auth"]
    middleware.append(Middleware(IdempotencyMiddleware, exclude_prefixes=exclude))

    app = FastAPI(
        title=title,
        version=version,
        description=description,
        openapi_tags=openapi_tags,
        lifespan=_lifespan(settings, bootstrap, jwks_fetcher),
        middleware=middleware,
        max_body_size=settings.max_body_bytes,
        # Swagger UI and ReDoc come from agora_kit.pages, with their assets served locally.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # Behind the gateway the docs live under /<service>, but the API does not: "Try it out"
        # must call /api/v1/... on the same origin, not /<service>/api/v1/...
        root_path_in_servers=False,
        responses={422: {"model": Problem, "description": "Validation error (RFC 9457)"}},
    )
    # Errors are problem+json, and the kit's own statuses (400, 401, 503...) are documented.
    app.openapi = truthful_openapi(app)  # type: ignore[method-assign]
    install_error_handlers(app, retry_after_s=settings.retry_after_s)
    for router in routers:
        app.include_router(router, prefix=api_prefix)
    app.include_router(health_router([*DEFAULT_READY_CHECKS, *ready_checks]))
    app.add_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    app.add_route("/asyncapi.json", _asyncapi, methods=["GET"], include_in_schema=False)
    install_pages(app, title=title)
    tracing.instrument_app(app)
    return app


async def _asyncapi(request: Request) -> Response:
    """Serve the event contract's AsyncAPI 3.0 document."""
    return JSONResponse(asyncapi_document())
