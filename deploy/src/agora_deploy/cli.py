"""The ``agora`` command line: run, stop and inspect the stack."""

from __future__ import annotations

import importlib
import json
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from agora_deploy.launchers.process import LaunchError
from agora_deploy.services import REGISTRY
from agora_deploy.stack import (
    ComponentInfo,
    Infra,
    database_url,
    default_state_dir,
    read_stack,
    running_pids,
    stop_recorded,
)
from agora_deploy.up import UpOptions, bring_up

app = typer.Typer(
    name="agora",
    help="Run, stop and inspect the Agora stack.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)


def components_table(components: list[ComponentInfo]) -> Table:
    """A table of what runs where."""
    table = Table(title="Agora stack")
    table.add_column("component", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("pid", no_wrap=True)
    table.add_column("more", overflow="fold")
    for comp in components:
        more = "\n".join(f"{k}={v}" for k, v in comp.extra.items())
        table.add_row(comp.name, comp.state, comp.url, str(comp.pid or "-"), more)
    return table


@app.command()
def up(
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start and return.")] = False,
    reload: Annotated[bool, typer.Option(help="Restart services on code change.")] = False,
    workers: Annotated[int, typer.Option(min=1, max=16, help="uvicorn workers per service")] = 1,
    services: Annotated[
        str | None,
        typer.Option(help="Comma-separated services to run, or 'none' (default: all)."),
    ] = None,
    gateway_port: Annotated[
        int, typer.Option(envvar="AGORA_GATEWAY_PORT", help="Port of the gateway.")
    ] = 8080,
) -> None:
    """Start Postgres, Redis, the broker, the mail sink and the services (Ctrl-C stops all)."""
    state_dir = default_state_dir()
    alive = running_pids(state_dir)
    if alive:
        err.print(
            f"[red]Agora is already running[/red] (pids {', '.join(map(str, alive))}, "
            f"{state_dir / 'stack.json'}). Run `agora down` first, or `agora status`."
        )
        raise typer.Exit(1)
    chosen = None
    if services is not None:
        chosen = tuple(n for n in services.split(",") if n.strip() and n != "none")
    options = UpOptions(workers=workers, reload=reload, gateway_port=gateway_port, services=chosen)
    infra = Infra(state_dir, die_with_parent=not detach)
    stop_event = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        with console.status("starting the stack..."):
            bring_up(infra, options)
    except (LaunchError, KeyboardInterrupt) as exc:
        err.print(f"[red]start failed:[/red] {exc}")
        infra.stop()
        infra.write()
        raise typer.Exit(1) from None
    console.print(components_table(infra.ordered()))
    if detach:
        console.print("Running in the background. `agora status` shows it, `agora down` stops it.")
        return
    console.print("Press Ctrl-C to stop.")
    try:
        while not stop_event.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        with console.status("stopping..."):
            infra.stop()
            infra.write()
        console.print("Stopped.")


@app.command()
def down() -> None:
    """Stop every process the stack started (no process is left)."""
    stopped = stop_recorded(default_state_dir())
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print INTERFACES.md §1 JSON.")] = False,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="Skip outbox backlog and consumer lag.")
    ] = False,
) -> None:
    """Show what runs where, with each service's outbox backlog and consumer lag."""
    components = read_stack(default_state_dir())
    if not no_metrics:
        from agora_deploy.observe import service_gauges

        for comp in components:
            if comp.name in {"users", "items", "notifier"} and comp.state == "running":
                comp.extra.update(service_gauges(comp.url))
    if as_json:
        typer.echo(json.dumps({"components": [c.to_json() for c in components]}, indent=2))
        return
    if not components:
        console.print("Agora is not running (no .agora/stack.json). Start it with `make run`.")
        return
    console.print(components_table(components))


events_app = typer.Typer(help="Watch the event topics.", no_args_is_help=True)
app.add_typer(events_app, name="events")


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


@app.command()
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


#: Command groups that services contribute: (group, module, Typer attribute, service, help).
SERVICE_COMMANDS = (
    ("keys", "agora_users.cli", "keys_app", "users", "Signing keys of the users service."),
    ("admin", "agora_users.cli", "admin_app", "users", "Administrators."),
    ("dlq", "agora_notifier.cli", "dlq_app", "notifier", "The notifier's dead letters."),
)


def mount_service_commands() -> None:
    """Add each installed service's command group (services join as they arrive)."""
    for group, module_name, attribute, service, help_text in SERVICE_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        sub = getattr(module, attribute, None)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=group, help=help_text, callback=stack_env(service))


def main() -> None:
    """Entry point of the ``agora`` script."""
    mount_service_commands()
    app()
