"""The ``agora`` commands beyond running the stack: ``trace``, ``demo``, ``events`` and the
services' own command groups."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from typing import Annotated

import httpx
import typer
from rich.console import Console

from agora_deploy.services import REGISTRY
from agora_deploy.stack import database_url, default_state_dir, read_stack

console = Console()
err = Console(stderr=True)

events_app = typer.Typer(help="Watch the event topics.", no_args_is_help=True)


def _bootstrap() -> str:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return env
    kafka = next((c for c in read_stack(default_state_dir()) if c.name == "kafka"), None)
    if kafka is None or kafka.state not in ("running", "external"):
        err.print(
            "[red]no broker:[/red] start the stack (`make run`) or set KAFKA_BOOTSTRAP_SERVERS"
        )
        raise typer.Exit(1)
    return kafka.url


@events_app.command("tail")
def events_tail(
    topic: Annotated[str, typer.Argument(help="e.g. users.events, items.events")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event.")
    ] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N events.")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop after this many idle seconds.")
    ] = None,
) -> None:
    """Print the CloudEvents on TOPIC live, one JSON object per line (Ctrl-C stops)."""
    import asyncio

    from agora_deploy.events import tail

    def emit(view: dict[str, object]) -> None:
        typer.echo(json.dumps(view, ensure_ascii=False))

    try:
        asyncio.run(
            tail(
                _bootstrap(),
                topic,
                from_beginning=from_beginning,
                limit=limit,
                idle_timeout_s=idle_timeout,
                emit=emit,
            )
        )
    except KeyboardInterrupt:
        pass
    except (TimeoutError, OSError) as exc:
        err.print(f"[red]cannot reach the broker:[/red] {exc}")
        raise typer.Exit(1) from None


def stack_env(service: str) -> Callable[[], None]:
    """A Typer callback that points a service's CLI at the running stack.

    Variables already set in the environment win, so the same commands work against
    docker-compose or production when DATABASE_URL and friends are exported.
    """

    def callback() -> None:
        state_dir = default_state_dir()
        os.environ.setdefault("AGORA_HOME", str(state_dir))
        components = {c.name: c for c in read_stack(state_dir)}
        spec = next(s for s in REGISTRY if s.name == service)
        if "postgres" in components:
            os.environ.setdefault(
                "DATABASE_URL", database_url(components["postgres"].url, spec.database)
            )
        if "redis" in components:
            os.environ.setdefault("REDIS_URL", components["redis"].url)
        if "kafka" in components:
            kafka = components["kafka"]
            os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", kafka.url)
            tansu = kafka.extra.get("flavour") == "tansu"
            os.environ.setdefault("KAFKA_ENABLE_IDEMPOTENCE", "false" if tansu else "true")

    return callback


def mount_service_commands(app: typer.Typer) -> None:
    """Add each installed service's declared command groups (services join as they arrive)."""
    for spec in REGISTRY:
        for command in spec.commands:
            module_name, attribute = command.typer.split(":", 1)
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
            sub = getattr(module, attribute, None)
            if isinstance(sub, typer.Typer):
                app.add_typer(
                    sub, name=command.name, help=command.help, callback=stack_env(spec.name)
                )


def trace_command(
    request_id: Annotated[str, typer.Argument(help="The X-Request-ID of the request.")],
) -> None:
    """Print one request's spans as a timed tree (the stack runs with `agora up --trace`)."""
    from agora_deploy.traces import find_trace, read_spans, render, traces_dir

    folder = traces_dir(default_state_dir())
    if not folder.is_dir():
        err.print(f"[red]no traces in {folder}[/red]: start the stack with `agora up --trace`")
        raise typer.Exit(1)
    spans = find_trace(read_spans(folder), request_id)
    if not spans:
        err.print(f"[red]no trace of request {request_id!r}[/red] in {folder}")
        raise typer.Exit(1)
    total_ms = (max(s.end_ns for s in spans) - min(s.start_ns for s in spans)) / 1e6
    typer.echo(
        f"trace {spans[0].trace_id}: request {request_id}, {len(spans)} spans, {total_ms:.1f} ms"
    )
    for line in render(spans):
        typer.echo(line)


def demo(
    mail_timeout: Annotated[float, typer.Option(help="Seconds to wait for each email.")] = 30.0,
) -> None:
    """Run a scripted scenario through the gateway and show the emails as they arrive."""
    from agora_deploy.demo import Demo, DemoError

    components = {c.name: c for c in read_stack(default_state_dir())}
    gateway, mail = components.get("gateway"), components.get("mail")
    if gateway is None or mail is None or gateway.state != "running":
        err.print("[red]the stack is not running:[/red] start it with `make run`")
        raise typer.Exit(1)
    try:
        Demo(gateway.url, mail.url, console.print, mail_timeout_s=mail_timeout).run()
    except (DemoError, AssertionError, httpx.HTTPError) as exc:
        err.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None
