"""Running a supervised stack: in the foreground, or detached (`agora up --detach`).

The detached supervisor is this module run as a program:
``python -m agora_deploy.supervisor_run``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from agora_deploy.infra import Infra
from agora_deploy.launchers.kafka import DurableBroker
from agora_deploy.launchers.process import LaunchError, pid_alive
from agora_deploy.supervise import (
    Supervisor,
    logger,
)
from agora_deploy.supervisor_state import (
    SupervisorState,
    read_supervisor_state,
    write_supervisor_state,
)

#: How often the embedded broker's retention (time and size) is applied.
RETENTION_EVERY_S = 300.0


def serve(
    infra: Infra,
    bring_up: Callable[[Infra], None],
    stop: threading.Event,
    *,
    on_ready: Callable[[Infra], None] | None = None,
    exit_with_pid: int | None = None,
) -> None:
    """Start the stack, supervise it until ``stop`` is set, then stop it (raises LaunchError)."""
    me = os.getpid()
    write_supervisor_state(infra.state_dir, SupervisorState(me, "starting"))
    try:
        try:
            bring_up(infra)
        except LaunchError as exc:
            write_supervisor_state(infra.state_dir, SupervisorState(me, "failed", str(exc)))
            raise
        supervisor = Supervisor(infra)
        write_supervisor_state(infra.state_dir, SupervisorState(me, "running"))
        if on_ready is not None:
            on_ready(infra)
        if exit_with_pid is not None:
            _watch_pid(exit_with_pid, stop)
        if infra.durable_broker is not None:
            _sweep_retention(infra.durable_broker, stop)
        supervisor.run(stop)
    finally:
        current = read_supervisor_state(infra.state_dir)
        if current is None or current.state != "failed":
            write_supervisor_state(infra.state_dir, SupervisorState(me, "stopping"))
        infra.stop()
        infra.write()
        if current is None or current.state != "failed":
            write_supervisor_state(infra.state_dir, SupervisorState(me, "stopped"))


def _sweep_retention(broker: DurableBroker, stop: threading.Event) -> None:
    """Apply the broker's retention every few minutes (its storage does not on its own)."""

    def sweep() -> None:
        while not stop.wait(RETENTION_EVERY_S):
            try:
                report = broker.sweep()
            except Exception as exc:  # a sweep that fails is tried again next time
                logger.warning("retention sweep failed: %s", exc)
            else:
                logger.info("retention sweep: %s", report)

    threading.Thread(target=sweep, name="retention", daemon=True).start()


def _watch_pid(pid: int, stop: threading.Event) -> None:
    """Set ``stop`` when ``pid`` dies (a test run that started a detached stack)."""

    def watch() -> None:
        while not stop.wait(1.0):
            if not pid_alive(pid):
                stop.set()

    threading.Thread(target=watch, name="exit-with", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the detached supervisor (``agora up --detach`` starts it)."""
    from agora_deploy.up import UpOptions
    from agora_deploy.up import bring_up as start_stack

    parser = argparse.ArgumentParser(prog="agora-supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--options", required=True, help="UpOptions as JSON")
    parser.add_argument("--exit-with-pid", type=int, default=None)
    args = parser.parse_args(argv)
    options = UpOptions.from_json(args.options)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    infra = Infra(args.state_dir, die_with_parent=False)
    with contextlib.suppress(LaunchError):
        serve(
            infra,
            lambda i: start_stack(i, options),
            stop,
            exit_with_pid=args.exit_with_pid,
        )


if __name__ == "__main__":
    main()
