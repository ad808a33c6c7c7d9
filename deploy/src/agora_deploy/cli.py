"""The ``agora`` command line: run, stop and inspect the stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agora_deploy.cli_more import demo, events_app, mount_service_commands, trace_command
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import LaunchError
from agora_deploy.services import REGISTRY
from agora_deploy.stack import (
    ComponentInfo,
    default_state_dir,
    read_stack,
    running_pids,
    stop_recorded,
)
from agora_deploy.supervisor_run import serve
from agora_deploy.supervisor_state import (
    SUPERVISOR_FILE,
    read_supervisor_state,
    request_restart,
    stop_supervisor,
)
from agora_deploy.up import UpOptions, bring_up

#: How long ``agora up --detach`` waits for the stack (a cold start takes about 20 s).
DETACH_START_TIMEOUT_S = 300.0

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
    trace: Annotated[
        bool,
        typer.Option(
            "--trace", help="Trace every request to <AGORA_HOME>/traces; see `agora trace`."
        ),
    ] = False,
) -> None:
    """Start every component, supervised: one that exits is restarted (Ctrl-C stops all)."""
    state_dir = default_state_dir()
    alive = running_pids(state_dir)
    supervisor = read_supervisor_state(state_dir)
    if supervisor is not None and supervisor.state in {"starting", "running", "stopping"}:
        alive = [supervisor.pid, *alive]
    if alive:
        err.print(
            f"[red]Agora is already running[/red] (pids {', '.join(map(str, alive))}, "
            f"{state_dir / 'stack.json'}). Run `agora down` first, or `agora status`."
        )
        raise typer.Exit(1)
    chosen = None
    if services is not None:
        chosen = tuple(n for n in services.split(",") if n.strip() and n != "none")
    options = UpOptions(
        workers=workers, reload=reload, gateway_port=gateway_port, services=chosen, trace=trace
    )
    try:
        options.selected()
    except LaunchError as exc:
        err.print(f"[red]start failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if detach:
        _up_detached(state_dir, options)
    else:
        _up_foreground(state_dir, options)


def _up_foreground(state_dir: Path, options: UpOptions) -> None:
    """Run the stack and its supervisor in this process until Ctrl-C or SIGTERM."""
    infra = Infra(state_dir, die_with_parent=True)
    stop_event = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop_event.set()

    def _ready(running: Infra) -> None:
        status_line.stop()
        console.print(components_table(running.ordered()))
        console.print("Supervised: a component that exits is restarted. Press Ctrl-C to stop.")

    previous_term = signal.signal(signal.SIGTERM, _on_signal)
    previous_int = signal.signal(signal.SIGINT, _on_signal)
    status_line = console.status("starting the stack...")
    status_line.start()
    try:
        serve(infra, lambda i: bring_up(i, options), stop_event, on_ready=_ready)
    except LaunchError as exc:
        status_line.stop()
        err.print(f"[red]start failed:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        status_line.stop()
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
    console.print("Stopped.")


def _up_detached(state_dir: Path, options: UpOptions) -> None:
    """Start the supervisor in the background and wait until the stack is up."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / SUPERVISOR_FILE).unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "agora_deploy.supervisor_run",
        "--state-dir", str(state_dir), "--options", options.to_json(),
    ]  # fmt: skip
    exit_with = os.environ.get("AGORA_EXIT_WITH_PID")
    if exit_with:
        argv += ["--exit-with-pid", exit_with]
    with (log_dir / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own module
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + DETACH_START_TIMEOUT_S
    with console.status("starting the stack..."):
        while True:
            state = read_supervisor_state(state_dir)
            if state is not None and state.state == "running":
                break
            if state is not None and state.state == "failed":
                proc.wait(timeout=60)
                err.print(f"[red]start failed:[/red] {state.error}")
                raise typer.Exit(1)
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_supervisor(state_dir)
                stop_recorded(state_dir)
                err.print(
                    "[red]start failed:[/red] the supervisor "
                    + ("exited" if proc.poll() is not None else "did not finish starting")
                    + f"; see {log_dir / 'supervisor.log'}"
                )
                raise typer.Exit(1)
            time.sleep(0.2)
    console.print(components_table(read_stack(state_dir)))
    console.print(
        f"Running in the background, supervised (pid {proc.pid}). "
        "`agora status` shows it, `agora down` stops it."
    )


@app.command()
def down() -> None:
    """Stop the supervisor and every process the stack started (no process is left)."""
    state_dir = default_state_dir()
    supervised = stop_supervisor(state_dir)
    stopped = stop_recorded(state_dir)
    if supervised:
        console.print("stopped the supervisor and its stack")
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing else was running")


@app.command()
def restart(
    name: Annotated[str, typer.Argument(help="A component: postgres, kafka, users, ...")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait until it runs again.")] = 120,
) -> None:
    """Restart one component of the running stack (its supervisor starts it again)."""
    state_dir = default_state_dir()
    supervisor = read_supervisor_state(state_dir)
    if supervisor is None or supervisor.state != "running":
        err.print("[red]no supervised stack is running:[/red] start it with `agora up`")
        raise typer.Exit(1)
    before = {c.name: c for c in read_stack(state_dir)}
    if name not in before or before[name].pid is None:
        err.print(f"[red]no component {name!r} with a process[/red] ({', '.join(before)})")
        raise typer.Exit(1)
    old_pid = before[name].pid
    request_restart(state_dir, name)
    deadline = time.monotonic() + timeout
    with console.status(f"restarting {name}..."):
        while time.monotonic() < deadline:
            now = {c.name: c for c in read_stack(state_dir)}.get(name)
            if now is not None and now.state == "running" and now.pid != old_pid:
                console.print(f"{name} restarted (pid {old_pid} -> {now.pid})")
                return
            time.sleep(0.2)
    err.print(f"[red]{name} is not running again after {timeout:.0f}s[/red]; see `agora status`")
    raise typer.Exit(1)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the stack as JSON.")] = False,
    no_metrics: Annotated[
        bool, typer.Option("--no-metrics", help="Skip outbox backlog and consumer lag.")
    ] = False,
) -> None:
    """Show what runs where, with each service's outbox backlog and consumer lag."""
    components = read_stack(default_state_dir())
    for comp in components:
        if comp.name == "storage" and comp.text("data_dir"):
            comp.extra["disk_bytes"] = _disk_bytes(Path(comp.text("data_dir")))
    if not no_metrics:
        from agora_deploy.observe import service_gauges

        for comp in components:
            if comp.name in {spec.name for spec in REGISTRY} and comp.state == "running":
                comp.extra.update(service_gauges(comp.url))
    if as_json:
        typer.echo(json.dumps({"components": [c.to_json() for c in components]}, indent=2))
        return
    if not components:
        console.print("Agora is not running (no .agora/stack.json). Start it with `make run`.")
        return
    console.print(components_table(components))
    urls = {c.name: c.url for c in components if c.state in ("running", "external")}
    if "gateway" in urls:
        console.print(f"front page: {urls['gateway']}/  (API docs, event catalogue, health)")
    if "mail" in urls:
        console.print(f"mail inbox: {urls['mail']}/  (every e-mail the system sent)")


def _disk_bytes(folder: Path) -> int:
    """Bytes the files under ``folder`` take."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


app.add_typer(events_app, name="events")


app.command()(demo)
app.command("trace")(trace_command)


def main() -> None:
    """Entry point of the ``agora`` script."""
    mount_service_commands(app)
    app()
