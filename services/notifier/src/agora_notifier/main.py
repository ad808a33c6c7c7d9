"""The notifier app: HTTP API, the consumer of users/items events and commands, the relay."""

from __future__ import annotations

import logging
import platform
from collections.abc import Sequence

from agora_contract import topics
from agora_kit.app import ServiceContext, create_service_app
from agora_kit.consumer import ConsumerConfig, ConsumerLoop, FailurePolicy
from agora_kit.deadletters import DeadLetterStore
from agora_kit.kafka import create_producer
from agora_kit.lifecycle import Component
from agora_kit.relay import OutboxRelay, RelayConfig
from agora_kit.topics import TopicBootstrap
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from agora_notifier import models
from agora_notifier.components import SenderComponent
from agora_notifier.config import NotifierSettings
from agora_notifier.handlers import NotifierHandlers
from agora_notifier.metrics import EmailMetrics
from agora_notifier.planning import Links
from agora_notifier.postman import Postman, PostmanConfig
from agora_notifier.rendering import Renderer, email_header_fix_missing, sender_address
from agora_notifier.router import build_router
from agora_notifier.smtp import SmtpSender
from agora_notifier.throttle import RedisThrottle

logger = logging.getLogger("agora.notifier")


def build_components(settings: NotifierSettings, ctx: ServiceContext) -> Sequence[Component]:
    """Build the relay, the SMTP pool and the consumer (started in this order)."""
    if email_header_fix_missing():
        # Our headers are safe on any version (rendering.header_text); the interpreter is not.
        logger.warning(
            "Python %s lacks the fix for CVE-2024-6923 (email header injection through "
            "encoded-words); upgrade to 3.11.10, 3.12.5 or later",
            platform.python_version(),
        )
    consumer_config = ConsumerConfig.from_settings(settings)
    sender = SmtpSender(
        settings.smtp,
        pool_size=settings.smtp_pool_size,
        connect_timeout_s=settings.smtp_connect_timeout_s,
        send_timeout_s=settings.smtp_send_timeout_s,
        idle_check_s=settings.smtp_idle_check_s,
        validate_certs=settings.smtp_validate_certs,
    )
    from_address = sender_address(settings.mail_from)
    postman = Postman(
        session_factory=ctx.session_factory,
        sender=sender,
        throttle=RedisThrottle(
            ctx.redis, limit=settings.throttle_limit, window_s=settings.throttle_window_s
        ),
        renderer=Renderer(),
        config=PostmanConfig(
            sender=from_address,
            message_id_domain=settings.message_id_domain or from_address.domain,
            send_lease_s=settings.send_lease_s,
            mark_retry_s=settings.mark_retry_s,
            max_attempts=consumer_config.max_attempts,
        ),
        metrics=EmailMetrics(ctx.registry),
    )
    handlers = NotifierHandlers(
        session_factory=ctx.session_factory, postman=postman, links=Links(settings.public_url)
    )
    ctx.extras["postman"] = postman
    ctx.extras["dead_letters"] = DeadLetterStore(
        ctx.session_factory, table=models.consumer.dead_letter, retry_table=models.consumer.retry
    )

    def producer() -> AIOKafkaProducer:
        return create_producer(settings, client_id=f"{settings.service_name}-relay")

    relay = OutboxRelay(
        engine=ctx.engine,
        outbox=models.outbox,
        producer_factory=producer,
        registry=ctx.registry,
        config=RelayConfig.from_settings(settings),
    )
    consumer = ConsumerLoop(
        settings=settings,
        group=settings.consumer_group,
        topics=settings.topics,
        handlers=handlers.table(),
        policy=FailurePolicy.INDEPENDENT,
        session_factory=ctx.session_factory,
        tables=models.consumer,
        registry=ctx.registry,
        config=consumer_config,
    )
    ctx.extras["consumer"] = consumer
    bootstrap = TopicBootstrap(settings, [*settings.topics, topics.NOTIFICATIONS_EVENTS])
    return [bootstrap, relay, SenderComponent(sender), consumer]


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    """Build the notifier app; nothing connects until its lifespan starts."""
    settings = settings or NotifierSettings()
    return create_service_app(
        settings,
        title="Agora notifier",
        description="Sends Agora's email from domain events and commands, effectively once.",
        routers=[build_router(group=settings.consumer_group)],
        build_components=lambda ctx: build_components(settings, ctx),
        openapi_tags=[
            {"name": "notifications", "description": "Your emails and mail preferences."},
            {"name": "dead-letters", "description": "Events the notifier gave up on (admin)."},
        ],
    )
