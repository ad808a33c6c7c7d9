"""The supervisor seen from outside: its state file, a restart request, stopping it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agora_deploy.launchers.process import pid_alive

SUPERVISOR_FILE = "supervisor.json"


CONTROL_DIR = "control"


def request_restart(state_dir: Path, name: str) -> None:
    """Ask the stack's supervisor to restart one component."""
    control = state_dir / CONTROL_DIR
    control.mkdir(parents=True, exist_ok=True)
    (control / f"restart-{name}").touch()


@dataclass
class SupervisorState:
    """The content of supervisor.json."""

    pid: int
    state: str  # starting | running | stopping | stopped | failed
    error: str = ""


def write_supervisor_state(state_dir: Path, state: SupervisorState) -> None:
    """Write supervisor.json atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / SUPERVISOR_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)) + "\n")
    tmp.replace(path)


def read_supervisor_state(state_dir: Path) -> SupervisorState | None:
    """The supervisor's state, or None when there is none or its process is gone."""
    try:
        raw = json.loads((state_dir / SUPERVISOR_FILE).read_text())
        state = SupervisorState(pid=int(raw["pid"]), state=str(raw["state"]), error=raw["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if state.state in {"stopped", "failed"}:
        return state
    return state if pid_alive(state.pid) else None


def stop_supervisor(state_dir: Path, *, timeout: float = 120.0) -> bool:
    """Ask a running supervisor to stop its stack; return whether one was running."""
    state = read_supervisor_state(state_dir)
    if state is None or state.state in {"stopped", "failed"} or state.pid == os.getpid():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(state.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(state.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGKILL)
    return True
