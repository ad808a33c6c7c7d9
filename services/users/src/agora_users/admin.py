"""Administration: the admin listing and making administrators (``agora admin create``)."""

from __future__ import annotations

import sqlalchemy as sa
from agora_contract import FieldChange
from agora_kit.uow import UnitOfWork
from pydantic import JsonValue
from sqlalchemy.ext.asyncio import AsyncSession

from agora_users.config import UsersSettings
from agora_users.models import Role, User
from agora_users.passwords import Passwords
from agora_users.schemas import UserCreate
from agora_users.service import record_update, register_user
from agora_users.tokens import TokenSigner


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_users(
    *, session: AsyncSession, skip: int, limit: int, search: str | None
) -> tuple[list[User], int]:
    """Return one page of accounts (by id) matching ``search`` in email or name, and the total."""
    where: list[sa.ColumnElement[bool]] = []
    if search:
        pattern = _like_pattern(search)
        where.append(
            sa.or_(User.email.ilike(pattern, escape="\\"), User.name.ilike(pattern, escape="\\"))
        )
    total = await session.scalar(sa.select(sa.func.count()).select_from(User).where(*where))
    rows = await session.scalars(
        sa.select(User).where(*where).order_by(User.id).offset(skip).limit(limit)
    )
    return list(rows), int(total or 0)


async def ensure_admin(
    *,
    uow: UnitOfWork,
    passwords: Passwords,
    signer: TokenSigner,
    settings: UsersSettings,
    email: str,
    password: str | None,
    name: str,
    verified: bool = False,
) -> tuple[User, bool]:
    """Give the account of ``email`` the admin role, creating it if needed; True if created."""
    async with uow:
        user = await uow.session.scalar(
            sa.select(User).where(User.email == email).with_for_update()
        )
        if user is not None:
            if Role.ADMIN.value not in user.roles:
                roles = sorted({*user.roles, Role.ADMIN.value})
                old: list[JsonValue] = list(user.roles)
                new: list[JsonValue] = list(roles)
                record_update(uow, user, {"roles": FieldChange(old=old, new=new)})
                user.roles = roles
            await uow.commit()
            return user, False
    if password is None:
        raise ValueError("a password is needed to create the account")
    user_in = UserCreate(email=email, name=name, password=password)
    user = await register_user(
        uow=uow,
        passwords=passwords,
        signer=signer,
        settings=settings,
        user_in=user_in,
        roles=[Role.ADMIN.value],
        verified=verified,
    )
    return user, True
