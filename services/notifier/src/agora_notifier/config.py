"""The notifier's settings: the shared ones plus SMTP, mail, throttle and topic knobs."""

from __future__ import annotations

from typing import Self

from agora_contract import topics
from agora_kit.settings import ServiceSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from agora_notifier.smtp_url import SmtpTarget, parse_smtp_url


class NotifierSettings(ServiceSettings):
    """Settings of the notifier (own knobs read with the ``NOTIFIER_`` prefix)."""

    # hide_input_in_errors: a model-level error would otherwise echo every variable read,
    # SMTP_URL's password included.
    model_config = SettingsConfigDict(
        env_prefix="NOTIFIER_",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    service_name: str = "notifier"

    #: ``smtp://``, ``smtps://`` or ``smtp+starttls://``, optionally ``user:password@``.
    smtp_url: SecretStr = Field(
        default=SecretStr("smtp://127.0.0.1:1025"), validation_alias="SMTP_URL"
    )
    #: The gateway's base URL: links in emails point there.
    public_url: str = Field(default="http://127.0.0.1:8080", validation_alias="PUBLIC_URL")

    mail_from: str = "Agora <no-reply@agora.localhost>"
    #: The right-hand side of every ``Message-ID`` (defaults to the From address's domain).
    message_id_domain: str | None = None
    smtp_pool_size: int = Field(default=4, ge=1, le=64)
    smtp_connect_timeout_s: float = Field(default=10.0, gt=0)
    #: Bound on one whole send (MAIL, RCPT, DATA) on an open connection.
    smtp_send_timeout_s: float = Field(default=20.0, gt=0)
    #: A pooled connection idle longer than this is checked with NOOP before reuse.
    smtp_idle_check_s: float = Field(default=10.0, ge=0)
    smtp_validate_certs: bool = True
    #: A ``sending`` record younger than this belongs to an attempt still in flight.
    send_lease_s: float = Field(default=60.0, gt=0)
    #: How long a database blip on the ``sent`` mark after a send is retried.
    mark_retry_s: float = Field(default=10.0, gt=0)
    #: The kit's bound on one event handler call, raised for mail: one delivery is an SMTP
    #: connect, a send and the mark's retries (checked at start-up, see below).
    consumer_handler_timeout_s: float = Field(
        default=45.0, gt=0, validation_alias="CONSUMER_HANDLER_TIMEOUT_S"
    )
    #: Events of one partition handled at once (the kit's default is one): emails to different
    #: aggregates go out side by side, while one aggregate's events keep their order.
    consumer_max_in_flight: int = Field(
        default=8, ge=1, le=64, validation_alias="CONSUMER_MAX_IN_FLIGHT"
    )

    #: At most this many emails per recipient per window; the rest wait (status throttled).
    throttle_limit: int = Field(default=30, ge=1)
    throttle_window_s: int = Field(default=60, ge=1)

    consumer_group: str = "notifier"
    users_topic: str = topics.USERS_EVENTS
    items_topic: str = topics.ITEMS_EVENTS
    commands_topic: str = topics.NOTIFIER_COMMANDS

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: SecretStr) -> SecretStr:
        parse_smtp_url(value.get_secret_value())  # raises a clear ValueError
        return value

    @model_validator(mode="after")
    def _handler_outlasts_one_delivery(self) -> Self:
        # A handler cancelled mid-send leaves the row ``sending``: the email goes out again
        # after the lease. So the bound must cover one delivery at its own timeouts.
        needed = self.smtp_connect_timeout_s + self.smtp_send_timeout_s + self.mark_retry_s
        if self.consumer_handler_timeout_s < needed:
            raise ValueError(
                f"CONSUMER_HANDLER_TIMEOUT_S ({self.consumer_handler_timeout_s:g} s) must be at "
                f"least NOTIFIER_SMTP_CONNECT_TIMEOUT_S + NOTIFIER_SMTP_SEND_TIMEOUT_S + "
                f"NOTIFIER_MARK_RETRY_S ({needed:g} s): a handler cut off mid-send sends the "
                "email twice"
            )
        return self

    def secret_fields(self) -> dict[str, SecretStr]:
        """The SMTP URL is a secret only when it carries a password."""
        fields = super().secret_fields()
        fields.pop("smtp_url", None)
        return fields

    @property
    def smtp(self) -> SmtpTarget:
        """The parsed SMTP target."""
        return parse_smtp_url(self.smtp_url.get_secret_value())

    @property
    def topics(self) -> tuple[str, str, str]:
        """The topics the notifier consumes."""
        return (self.users_topic, self.items_topic, self.commands_topic)
