"""Password reset: request a mail (same answer for every address), confirm with the token."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from agora_contract import SendPasswordReset
from agora_kit.uow import UnitOfWork
from redis.asyncio import Redis

from agora_users import sessions
from agora_users.config import UsersSettings
from agora_users.models import TokenPurpose, User
from agora_users.onetime import consume_one_time, issue_one_time
from agora_users.passwords import Passwords
from agora_users.security import Revocation
from agora_users.throttle import Throttle
from agora_users.tokens import TokenSigner


class ResetLimits:
    """Reset requests per client (429 beyond) and mails per address (silently dropped beyond)."""

    def __init__(self, redis: Redis, settings: UsersSettings) -> None:
        window = settings.reset_window_s
        self.by_client = Throttle(
            redis, name="reset-client", limit=settings.reset_max_per_client, window_s=window
        )
        self.by_email = Throttle(
            redis, name="reset-email", limit=settings.reset_max_per_email, window_s=window
        )
        #: Verification mails a user may ask for again, per window.
        self.resend = Throttle(
            redis, name="verify-resend", limit=settings.reset_max_per_email, window_s=window
        )


async def request_password_reset(
    *,
    uow: UnitOfWork,
    signer: TokenSigner,
    settings: UsersSettings,
    limits: ResetLimits,
    email: str,
    client: str | None,
) -> bool:
    """Queue a reset mail when the address has an account; return whether one was queued.

    The caller answers the same either way. The per-address limit counts unknown addresses
    too, so hitting it reveals nothing; it stops anyone from flooding a mailbox.
    """
    await check_reset_client(limits, client)
    return await queue_password_reset(
        uow=uow, signer=signer, settings=settings, limits=limits, email=email
    )


async def check_reset_client(limits: ResetLimits, client: str | None) -> None:
    """Count a reset request from ``client``; 429 beyond its limit (same for every address)."""
    if client is not None:
        await limits.by_client.check(client, "Too many password-reset requests; try later.")
        await limits.by_client.hit(client)


async def queue_password_reset(
    *,
    uow: UnitOfWork,
    signer: TokenSigner,
    settings: UsersSettings,
    limits: ResetLimits,
    email: str,
) -> bool:
    """The part of a reset request whose cost depends on the account existing (run it late)."""
    if await limits.by_email.hit(email) > limits.by_email.limit:
        return False
    async with uow:
        user = await uow.session.scalar(
            sa.select(User).where(User.email == email).with_for_update()
        )
        if user is None or not user.is_active:
            return False
        token, expires_at = await issue_one_time(
            uow.session,
            signer=signer,
            user=user,
            purpose=TokenPurpose.PASSWORD_RESET,
            ttl_s=settings.reset_token_ttl_s,
        )
        uow.add_event(
            SendPasswordReset(
                user_id=user.id,
                email=user.email,
                name=user.name,
                token=token,
                expires_at=expires_at,
            )
        )
        await uow.commit()
    return True


async def confirm_password_reset(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    signer: TokenSigner,
    token: str,
    new_password: str,
) -> tuple[str, list[Revocation]]:
    """Set the new password with a reset token; end every session of the account.

    Return the account's address (its failed-login count is cleared) and the access tokens
    to revoke.
    """
    # Checked before hashing, so a bad token costs no argon2 run; checked again under lock.
    signer.decode_one_time(token, TokenPurpose.PASSWORD_RESET)
    hashed = await passwords.hash(new_password)
    async with uow:
        session = uow.session
        _row, user = await consume_one_time(
            session, signer=signer, token=token, purpose=TokenPurpose.PASSWORD_RESET
        )
        user.hashed_password = hashed
        user.updated_at = datetime.now(UTC)
        revoked = await sessions.revoke_user_sessions(session, user.id)
        email = user.email
        await uow.commit()
    return email, revoked
