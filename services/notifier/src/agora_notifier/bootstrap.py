"""The notifier's runtime: built once in the lifespan from the kit's clients."""

from __future__ import annotations

import logging
import platform as interpreter
from dataclasses import dataclass

from agora_contract import topics
from agora_kit.consumer import ConsumerConfig, ConsumerLoop, FailurePolicy
from agora_kit.consumer.deadletters import DeadLetterStore
from agora_kit.kafka import create_producer
from agora_kit.lifecycle import Component
from agora_kit.outbox.relay import OutboxRelay
from agora_kit.outbox.relay_config import RelayConfig
from agora_kit.runtime import Platform
from agora_kit.topics import TopicBootstrap
from aiokafka import AIOKafkaProducer

from agora_notifier import models
from agora_notifier.config import NotifierSettings
from agora_notifier.handlers import NotifierHandlers
from agora_notifier.metrics import EmailMetrics
from agora_notifier.postman import Postman
from agora_notifier.postman_config import PostmanConfig
from agora_notifier.rendering import Renderer, email_header_fix_missing, sender_address
from agora_notifier.smtp import SenderComponent, SmtpSender
from agora_notifier.throttle import RedisThrottle
from agora_notifier.wording import Links

logger = logging.getLogger("agora.notifier")


@dataclass(frozen=True, slots=True)
class NotifierRuntime:
    """The notifier's own objects and its background components in start order."""

    sender: SmtpSender
    postman: Postman
    handlers: NotifierHandlers
    dead_letters: DeadLetterStore
    consumer: ConsumerLoop
    components: tuple[Component, ...]


def _warn_on_unpatched_interpreter() -> None:
    if email_header_fix_missing():
        # Our headers are safe on any version (rendering.header_text); the interpreter is not.
        logger.warning(
            "Python %s lacks the fix for CVE-2024-6923 (email header injection through "
            "encoded-words); upgrade to 3.11.10, 3.12.5 or later",
            interpreter.python_version(),
        )


def bootstrap(platform: Platform[NotifierSettings]) -> NotifierRuntime:
    """Build the runtime: topic bootstrap, relay, SMTP pool and consumer (started in order)."""
    _warn_on_unpatched_interpreter()
    settings = platform.settings
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
        session_factory=platform.session_factory,
        sender=sender,
        throttle=RedisThrottle(
            platform.redis, limit=settings.throttle_limit, window_s=settings.throttle_window_s
        ),
        renderer=Renderer(),
        config=PostmanConfig(
            sender=from_address,
            message_id_domain=settings.message_id_domain or from_address.domain,
            send_lease_s=settings.send_lease_s,
            mark_retry_s=settings.mark_retry_s,
            max_attempts=consumer_config.max_attempts,
        ),
        metrics=EmailMetrics(platform.registry),
    )
    handlers = NotifierHandlers(
        session_factory=platform.session_factory,
        postman=postman,
        links=Links(settings.public_url),
    )

    def producer() -> AIOKafkaProducer:
        return create_producer(settings, client_id=f"{settings.service_name}-relay")

    relay = OutboxRelay(
        engine=platform.engine,
        outbox=models.outbox,
        producer_factory=producer,
        registry=platform.registry,
        config=RelayConfig.from_settings(settings),
    )
    consumer = ConsumerLoop(
        settings=settings,
        group=settings.consumer_group,
        topics=settings.topics,
        handlers=handlers.table(),
        policy=FailurePolicy.INDEPENDENT,
        session_factory=platform.session_factory,
        tables=models.consumer,
        registry=platform.registry,
        config=consumer_config,
    )
    topic_bootstrap = TopicBootstrap(settings, [*settings.topics, topics.NOTIFICATIONS_EVENTS])
    return NotifierRuntime(
        sender=sender,
        postman=postman,
        handlers=handlers,
        dead_letters=DeadLetterStore(
            platform.session_factory,
            table=models.consumer.dead_letter,
            retry_table=models.consumer.retry,
        ),
        consumer=consumer,
        components=(topic_bootstrap, relay, SenderComponent(sender), consumer),
    )
