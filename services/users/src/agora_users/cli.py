"""The users service's commands, mounted by the ``agora`` CLI as ``agora keys`` and ``agora admin``.

They read their settings from the environment exactly like the service (UsersSettings);
``agora`` points DATABASE_URL, REDIS_URL and AGORA_HOME at the running stack first.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import sqlalchemy as sa
import typer
from agora_kit.db import create_engine, create_session_factory
from agora_kit.uow import UnitOfWork
from pydantic import ValidationError

from agora_users import admin
from agora_users.config import KeyAlgorithm, UsersSettings
from agora_users.keys import KeySetError, rotate_folder
from agora_users.keystore import KeyStore, key_lifetime
from agora_users.models import OUTBOX, User
from agora_users.passwords import Passwords
from agora_users.schemas import PASSWORD_MAX, PASSWORD_MIN, clean_name, normalise_email
from agora_users.tokens import TokenSigner

keys_app = typer.Typer(help="Signing keys of the users service.", no_args_is_help=True)
admin_app = typer.Typer(help="Administrators of Agora.", no_args_is_help=True)


@admin_app.callback()
def _admin() -> None:
    """Administrators of Agora (a group, so ``admin create`` keeps its name)."""


def _settings() -> UsersSettings:
    try:
        return UsersSettings()
    except ValidationError as exc:
        typer.secho(f"invalid settings: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from exc


@keys_app.command("rotate")
def rotate(
    algorithm: Annotated[
        KeyAlgorithm | None,
        typer.Option(help="Algorithm of the new key (default: USERS_KEY_ALGORITHM)."),
    ] = None,
    retire_now: Annotated[
        bool,
        typer.Option(
            "--retire-now",
            help="After a key compromise: the previous key stops verifying at once "
            "(every token it signed is refused; sessions must sign in again).",
        ),
    ] = False,
) -> None:
    """Add a signing key and sign with it; the old key verifies until its tokens expire."""
    settings = _settings()
    folder = settings.key_folder
    if folder is None:
        typer.secho(
            "the keys come from USERS_SIGNING_KEYS: rotate them where that secret is managed",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(2)
    keep_for = timedelta(0) if retire_now else key_lifetime(settings)
    kid = rotate_folder(folder, algorithm or settings.key_algorithm, keep_for=keep_for)
    until = (datetime.now(UTC) + keep_for).isoformat(timespec="seconds")
    typer.echo(f"new signing key {kid} in {folder}")
    if retire_now:
        typer.echo("the previous key is retired now; running services pick the change up")
    else:
        typer.echo(f"the previous key stays in the JWKS until {until}; services pick it up")


@keys_app.command("list")
def list_keys() -> None:
    """Show the key set: which key signs, and until when the others verify."""
    settings = _settings()
    try:
        keyset = KeyStore.from_settings(settings).keyset
    except KeySetError as exc:
        typer.secho(str(exc), err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from exc
    for key in keyset.usable():
        state = "active" if key.kid == keyset.active.kid else f"verifies until {key.not_after}"
        typer.echo(f"{key.kid}  {key.algorithm.value}  {state}")


def _check_password(value: str) -> str:
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise typer.BadParameter(f"use {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    return value


async def _account_exists(settings: UsersSettings, email: str) -> bool:
    engine = create_engine(settings, application_name="agora-admin")
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(sa.select(User.id).where(User.email == email))
            return found is not None
    finally:
        await engine.dispose()


async def _ensure_admin(
    settings: UsersSettings, *, email: str, password: str | None, name: str, verified: bool
) -> tuple[int, bool]:
    engine = create_engine(settings, application_name="agora-admin")
    try:
        keys = KeyStore.from_settings(settings)
        user, created = await admin.ensure_admin(
            uow=UnitOfWork(create_session_factory(engine), outbox=OUTBOX),
            passwords=Passwords.from_settings(settings),
            signer=TokenSigner(keys, settings),
            settings=settings,
            email=email,
            password=password,
            name=name,
            verified=verified,
        )
        return user.id, created
    finally:
        await engine.dispose()


@admin_app.command("create")
def create(
    email: Annotated[str, typer.Option(help="The administrator's email address.")],
    password: Annotated[
        str | None,
        typer.Option(help="Password of a new account (prompted for when omitted)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name of a new account.")] = None,
    verified: Annotated[
        bool, typer.Option(help="Treat the address as verified (no verification mail).")
    ] = False,
) -> None:
    """Create an administrator, or give an existing account the admin role."""
    settings = _settings()
    try:
        address = normalise_email(email)
        display = clean_name(name or address.split("@", 1)[0])
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if password is None and not asyncio.run(_account_exists(settings, address)):
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if password is not None:
        _check_password(password)
    user_id, created = asyncio.run(
        _ensure_admin(settings, email=address, password=password, name=display, verified=verified)
    )
    what = "created administrator" if created else "administrator role given to"
    typer.echo(f"{what} {address} (user {user_id})")
