"""Supervision: restart any component that exits unasked, as compose's ``restart: unless-stopped``.

One supervisor runs per stack: in the ``agora up`` process itself in the foreground, or, with
``--detach``, in a background process of its own (``python -m agora_deploy.supervisor_run``) that
outlives the command. It watches every process the stack started:

- a process that exits when nobody asked is started again with the same command, ports and
  environment, after a backoff that doubles from 0.5 s up to 30 s (and starts over once the
  process has run for a minute);
- a service whose ``/health/live`` fails for 30 s in a row is wedged: it is killed and
  restarted like one that exited;
- ``agora restart NAME`` asks for a restart through a file in the state folder's
  ``control/`` directory; it is not counted as a crash.

``stack.json`` shows each component's ``restarts`` and ``last_exit`` (``SIGKILL``,
``exit 1``, ``liveness``, ``restart requested``); ``supervisor.json`` holds the supervisor's
own pid and state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agora_deploy.infra import Infra
from agora_deploy.launchers.process import LaunchError, ManagedProcess, port_is_open
from agora_deploy.stack import ComponentInfo
from agora_deploy.supervisor_state import (
    CONTROL_DIR,
)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
#: A process that ran this long before it exited starts again from the shortest backoff.
BACKOFF_RESET_AFTER_S = 60.0
#: How long a restarted process may take to pass its health check.
START_TIMEOUT_S = 120.0
LIVENESS_EVERY_S = 5.0
#: Consecutive failed liveness probes (30 s) before a service counts as wedged.
LIVENESS_FAILURES = 6
#: How long a restart waits for the dead process's ports to be released.
PORT_WAIT_S = 30.0
TICK_S = 0.25
logger = logging.getLogger("agora.supervisor")


@dataclass
class Unit:
    """One supervised process and its restart bookkeeping."""

    name: str
    process: ManagedProcess
    info: ComponentInfo
    state: str = "running"
    restarts: int = 0
    last_exit: str = ""
    backoff_s: float = 0.0
    next_start_at: float = 0.0
    started_at: float = field(default_factory=time.monotonic)
    start_deadline: float = 0.0
    ports_wait_until: float = 0.0
    live_failures: int = 0
    next_live_at: float = 0.0

    def publish(self) -> None:
        """Copy the bookkeeping into the component's stack.json entry."""
        self.info.pid = self.process.pid
        self.info.state = "running" if self.state == "running" else "restarting"
        if self.state == "starting":
            self.info.state = "starting"
        self.info.extra["restarts"] = self.restarts
        if self.last_exit:
            self.info.extra["last_exit"] = self.last_exit


class Supervisor:
    """Keeps every process of an ``Infra`` running until asked to stop."""

    def __init__(self, infra: Infra, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.infra = infra
        self.clock = clock
        self.units: dict[str, Unit] = {}
        for name, process in infra.processes():
            info = infra.components[name]
            self.units[name] = Unit(name, process, info, started_at=clock())
            self.units[name].publish()
        infra.write()

    @property
    def control_dir(self) -> Path:
        """Where ``agora restart`` drops its requests."""
        return self.infra.state_dir / CONTROL_DIR

    def run(self, stop: threading.Event) -> None:
        """Supervise until ``stop`` is set."""
        while not stop.is_set():
            self.tick()
            stop.wait(TICK_S)

    def tick(self) -> None:
        """One pass over every unit; writes stack.json when anything changed."""
        changed = self._take_requests()
        for unit in self.units.values():
            changed |= self._step(unit)
        if changed:
            for unit in self.units.values():
                unit.publish()
            self.infra.write()

    def _take_requests(self) -> bool:
        if not self.control_dir.is_dir():
            return False
        changed = False
        for request in sorted(self.control_dir.glob("restart-*")):
            name = request.name.removeprefix("restart-")
            request.unlink(missing_ok=True)
            unit = self.units.get(name)
            if unit is None:
                continue
            unit.process.stop(timeout=15)
            unit.last_exit = "restart requested"
            self._schedule(unit, delay=0.0)
            changed = True
        return changed

    def _step(self, unit: Unit) -> bool:
        now = self.clock()
        if unit.state == "running":
            if not unit.process.alive():
                return self._exited(unit, unit.process.exit_description())
            return self._probe_liveness(unit, now)
        if unit.state == "restarting":
            return self._maybe_start(unit, now)
        # starting
        if not unit.process.alive():
            return self._exited(unit, unit.process.exit_description())
        health = unit.process.health
        if health is None or health():
            unit.state = "running"
            unit.started_at = now
            unit.live_failures = 0
            unit.next_live_at = now + LIVENESS_EVERY_S
            return True
        if now < unit.start_deadline:
            return False
        if unit.process.liveness is not None and unit.process.liveness():
            # Alive but not ready: a dependency is down. Killing it would not help.
            unit.state = "running"
            unit.started_at = now
            return True
        unit.process.kill_group()
        return self._exited(unit, "start timed out")

    def _probe_liveness(self, unit: Unit, now: float) -> bool:
        probe = unit.process.liveness
        if probe is None or now < unit.next_live_at:
            return False
        unit.next_live_at = now + LIVENESS_EVERY_S
        if probe():
            unit.live_failures = 0
            return False
        unit.live_failures += 1
        if unit.live_failures < LIVENESS_FAILURES:
            return False
        unit.process.kill_group()
        return self._exited(unit, "liveness")

    def _exited(self, unit: Unit, how: str) -> bool:
        # Workers or backends that outlived the leader would hold its ports and memory.
        unit.process.kill_group()
        ran_s = self.clock() - unit.started_at
        if ran_s >= BACKOFF_RESET_AFTER_S or unit.backoff_s == 0.0:
            unit.backoff_s = BACKOFF_FIRST_S
        else:
            unit.backoff_s = min(unit.backoff_s * 2, BACKOFF_MAX_S)
        unit.restarts += 1
        unit.last_exit = how
        self._schedule(unit, delay=unit.backoff_s)
        return True

    def _schedule(self, unit: Unit, *, delay: float) -> None:
        unit.state = "restarting"
        unit.next_start_at = self.clock() + delay
        unit.ports_wait_until = unit.next_start_at + PORT_WAIT_S

    def _maybe_start(self, unit: Unit, now: float) -> bool:
        if now < unit.next_start_at:
            return False
        busy = [p for p in unit.process.ports if port_is_open("127.0.0.1", p, timeout=0.2)]
        if busy and now < unit.ports_wait_until:
            return False
        try:
            unit.process.start()
        except LaunchError as exc:
            unit.last_exit = f"restart failed: {exc}"
            unit.backoff_s = min(max(unit.backoff_s, BACKOFF_FIRST_S) * 2, BACKOFF_MAX_S)
            self._schedule(unit, delay=unit.backoff_s)
            return True
        unit.state = "starting"
        unit.start_deadline = now + START_TIMEOUT_S
        return True
