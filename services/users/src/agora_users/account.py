"""Changes to an account its owner makes with the password: email, password, deletion."""

from __future__ import annotations

import sqlalchemy as sa
from agora_contract import (
    UserDeleted,
    UserEmailChanged,
)
from agora_kit.uow import UnitOfWork
from sqlalchemy.exc import IntegrityError

from agora_users import sessions
from agora_users.config import UsersSettings
from agora_users.exceptions import (
    EmailTaken,
    WrongPassword,
)
from agora_users.models import RefreshToken, TokenPurpose, User
from agora_users.onetime import use_up_tokens
from agora_users.passwords import Passwords
from agora_users.security import LoginGuard, Revocation
from agora_users.service import (
    _email_in_use,
    _is_email_conflict,
    _now,
    bump,
    issue_verification,
    lock_user,
)
from agora_users.tokens import TokenSigner


async def _check_password(
    user: User, password: str, *, passwords: Passwords, guard: LoginGuard, client: str | None
) -> None:
    """Confirm the current password, throttled like a login (a stolen token cannot guess)."""
    attempt = await guard.attempt(email=user.email, client=client)
    try:
        ok = await passwords.verify(user.hashed_password, password)
    except BaseException:
        await attempt.abandon()
        raise
    if not ok:
        raise WrongPassword()
    await attempt.succeeded()


async def change_email(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    signer: TokenSigner,
    settings: UsersSettings,
    guard: LoginGuard,
    user_id: int,
    new_email: str,
    current_password: str,
    client: str | None,
) -> User:
    """Change the address (current password required); it must be verified again."""
    async with uow:
        session = uow.session
        user = await lock_user(session, user_id)
        await _check_password(
            user, current_password, passwords=passwords, guard=guard, client=client
        )
        if new_email == user.email:
            await uow.commit()  # nothing to change; commit keeps ``user`` loaded
            return user
        if await _email_in_use(session, new_email):
            raise EmailTaken()
        old_email = user.email
        user.email = new_email
        user.email_verified = False
        version = bump(user)
        try:
            await session.flush()
        except IntegrityError as exc:
            if _is_email_conflict(exc):
                raise EmailTaken() from exc
            raise
        uow.add_event(
            UserEmailChanged(user_id=user.id, old_email=old_email, new_email=new_email),
            aggregateversion=version,
        )
        await issue_verification(uow, signer=signer, settings=settings, user=user)
        await uow.commit()
    return user


async def change_password(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    guard: LoginGuard,
    user_id: int,
    current_password: str,
    new_password: str,
    current_jti: str,
    client: str | None,
) -> list[Revocation]:
    """Set a new password; end the account's other sessions and pending reset tokens."""
    hashed = await passwords.hash(new_password)
    async with uow:
        session = uow.session
        user = await lock_user(session, user_id)
        await _check_password(
            user, current_password, passwords=passwords, guard=guard, client=client
        )
        user.hashed_password = hashed
        user.updated_at = _now()
        await use_up_tokens(session, user.id, TokenPurpose.PASSWORD_RESET)
        keep = await session.scalar(
            sa.select(RefreshToken.family_id).where(RefreshToken.access_jti == current_jti)
        )
        revoked = await sessions.revoke_user_sessions(session, user.id, except_family=keep)
        await uow.commit()
    return revoked


async def delete_user(*, uow: UnitOfWork, user_id: int, current: Revocation) -> list[Revocation]:
    """Erase the account and everything of it here; publish ``UserDeleted``."""
    async with uow:
        session = uow.session
        user = await lock_user(session, user_id)
        revoked = await sessions.revoke_user_sessions(session, user.id)
        version = user.version + 1
        # Refresh and one-time tokens go with the row (ON DELETE CASCADE).
        await session.delete(user)
        uow.add_event(UserDeleted(user_id=user_id), aggregateversion=version)
        await uow.commit()
    return [*revoked, current]
