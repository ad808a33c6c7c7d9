"""``agora dlq``: list, show, replay and discard the notifier's dead letters.

Reads its settings from the environment like the service (``DATABASE_URL``...) and works on
the database through the kit's dead-letter store. A replay hands the message back to the
running notifier's consumer (its retry worker picks it up at once); nothing is sent here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from agora_kit.consumer.deadletter_table import DeadLetterStatus
from agora_kit.consumer.deadletters import (
    DeadLetter,
    DeadLetterNotFound,
    DeadLetterNotPending,
    DeadLetterStore,
)
from agora_kit.consumer.routes import DeadLetterPublic
from agora_kit.db import create_engine, create_session_factory
from agora_kit.outages import dependency_down

from agora_notifier import models
from agora_notifier.config import NotifierSettings

T = TypeVar("T")

dlq_app = typer.Typer(help="The notifier's dead letters.", no_args_is_help=True)


def _run(action: Callable[[DeadLetterStore], Awaitable[T]]) -> T:
    """Run ``action`` against the notifier's database; exit 1 with a clear message on failure."""
    settings = NotifierSettings()

    async def main() -> T:
        engine = create_engine(settings, application_name="agora-dlq")
        try:
            store = DeadLetterStore(
                create_session_factory(engine),
                table=models.consumer.dead_letter,
                retry_table=models.consumer.retry,
            )
            return await action(store)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except DeadLetterNotFound as exc:
        typer.echo(f"error: no dead letter {exc}", err=True)
        raise typer.Exit(1) from None
    except DeadLetterNotPending as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        if dependency_down(exc) is None:
            raise
        typer.echo(f"error: the notifier's database is unreachable: {exc}", err=True)
        raise typer.Exit(1) from None


def _line(letter: DeadLetter) -> str:
    record = letter.record
    return (
        f"{letter.id:>6}  {letter.status.value:<9}  {letter.error_kind.value:<12}  "
        f"{letter.event_type or '-'}  {record.topic}[{record.partition}]@{record.offset}  "
        f"{letter.error[:80]}"
    )


def _json(letter: DeadLetter) -> str:
    return json.dumps(
        DeadLetterPublic.from_dead_letter(letter).model_dump(mode="json"),
        indent=2,
        ensure_ascii=False,
    )


@dlq_app.command("list")
def list_letters(
    status: Annotated[
        DeadLetterStatus | None, typer.Option(help="Only this status (default: all).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters, newest first."""
    group = NotifierSettings().consumer_group

    async def action(store: DeadLetterStore) -> list[DeadLetter]:
        return await store.list(group=group, status=status, limit=limit)

    letters = _run(action)
    if as_json:
        for letter in letters:
            typer.echo(
                json.dumps(DeadLetterPublic.from_dead_letter(letter).model_dump(mode="json"))
            )
        return
    if not letters:
        typer.echo("no dead letters")
        return
    typer.echo(f"{'id':>6}  {'status':<9}  {'kind':<12}  type  position  error")
    for letter in letters:
        typer.echo(_line(letter))


@dlq_app.command("show")
def show(
    dead_letter_id: Annotated[int, typer.Argument(min=1, help="The dead letter's id.")],
) -> None:
    """Show one dead letter in full (as JSON)."""
    group = NotifierSettings().consumer_group

    async def action(store: DeadLetterStore) -> DeadLetter:
        letter = await store.get(dead_letter_id, group=group)
        if letter is None:
            raise DeadLetterNotFound(dead_letter_id)
        return letter

    typer.echo(_json(_run(action)))


@dlq_app.command("replay")
def replay(
    dead_letter_id: Annotated[
        int | None, typer.Argument(min=1, help="The dead letter's id.", show_default=False)
    ] = None,
    all_pending: Annotated[
        bool, typer.Option("--all-pending", help="Replay every pending dead letter.")
    ] = False,
) -> None:
    """Hand a pending dead letter (or all of them) back to the running notifier."""
    group = NotifierSettings().consumer_group
    if (dead_letter_id is None) == (not all_pending):
        typer.echo("error: give a dead letter's id or --all-pending", err=True)
        raise typer.Exit(2)

    async def action(store: DeadLetterStore) -> list[DeadLetter]:
        if dead_letter_id is not None:
            return [await store.replay(dead_letter_id, group=group)]
        pending = await store.list(group=group, status=DeadLetterStatus.PENDING, limit=1000)
        return [await store.replay(letter.id, group=group) for letter in pending]

    letters = _run(action)
    for letter in letters:
        typer.echo(f"dead letter {letter.id} replayed: the notifier handles it again shortly")
    if all_pending:
        typer.echo(f"{len(letters)} dead letter(s) replayed")


@dlq_app.command("discard")
def discard(
    dead_letter_id: Annotated[int, typer.Argument(min=1, help="The dead letter's id.")],
) -> None:
    """Discard a pending dead letter (it stays listed as discarded)."""
    group = NotifierSettings().consumer_group

    async def action(store: DeadLetterStore) -> DeadLetter:
        return await store.discard(dead_letter_id, group=group)

    letter = _run(action)
    typer.echo(f"dead letter {letter.id} discarded")
