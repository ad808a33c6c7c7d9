"""The stack: start every component in order, describe it in stack.json, stop it again."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agora_deploy.launchers.process import (
    pid_alive,
    stop_pid,
)
from agora_deploy.services import REPO_ROOT

State = Literal["running", "starting", "restarting", "stopped", "failed", "external"]
COMPONENT_ORDER = (
    "postgres", "redis", "kafka", "mail", "users", "items", "notifier", "gateway", "storage",
)  # fmt: skip
#: ``AGORA_BROKER_STORAGE=memory`` runs the broker without durable storage (fast, loses its log).
BROKER_STORAGE_ENV = "AGORA_BROKER_STORAGE"


@dataclass
class ComponentInfo:
    """One entry of stack.json (docs/interfaces.md, The stack description)."""

    name: str
    url: str
    pid: int | None
    state: State
    extra: dict[str, str | int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The flat JSON object stack.json holds for this component."""
        data: dict[str, object] = {
            "name": self.name,
            "url": self.url,
            "pid": self.pid,
            "state": self.state,
        }
        data.update(self.extra)
        return data

    def text(self, key: str, default: str = "") -> str:
        """An extra value as text (``default`` when absent)."""
        return str(self.extra.get(key, default))

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ComponentInfo:
        """Parse one stack.json entry."""
        core = {"name", "url", "pid", "state"}
        pid = data.get("pid")
        return cls(
            name=str(data["name"]),
            url=str(data["url"]),
            pid=int(pid) if isinstance(pid, int) else None,
            state=str(data["state"]),  # type: ignore[arg-type]
            extra={
                k: v if isinstance(v, int) else str(v) for k, v in data.items() if k not in core
            },
        )


def default_state_dir() -> Path:
    """``.agora/`` at the repository root, or ``AGORA_HOME`` when set."""
    return Path(os.environ.get("AGORA_HOME", REPO_ROOT / ".agora"))


def stack_file(state_dir: Path) -> Path:
    """Path of stack.json."""
    return state_dir / "stack.json"


def read_stack(state_dir: Path) -> list[ComponentInfo]:
    """Read stack.json with each recorded process's current state."""
    path = stack_file(state_dir)
    if not path.exists():
        return []
    raw = json.loads(path.read_text())
    components = [ComponentInfo.from_json(c) for c in raw.get("components", [])]
    for comp in components:
        live = comp.state in {"running", "starting", "restarting"}
        if comp.pid is not None and live and not pid_alive(comp.pid):
            comp.state = "restarting" if comp.state == "restarting" else "stopped"
    return components


def write_stack(state_dir: Path, components: Iterable[ComponentInfo]) -> None:
    """Write stack.json atomically."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = stack_file(state_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"components": [c.to_json() for c in components]}, indent=2) + "\n")
    tmp.replace(path)


def running_pids(state_dir: Path) -> list[int]:
    """Pids recorded in stack.json that are still alive."""
    live = {"running", "starting", "restarting"}
    return [
        c.pid
        for c in read_stack(state_dir)
        if c.pid is not None and c.state in live and pid_alive(c.pid)
    ]


def stop_recorded(state_dir: Path) -> list[str]:
    """Stop every process recorded in stack.json, in reverse start order; return their names."""
    components = read_stack(state_dir)
    stopped: list[str] = []
    for comp in reversed(components):
        if comp.pid is not None and pid_alive(comp.pid):
            stop_pid(comp.pid, timeout=15)
            stopped.append(comp.name)
        if comp.state != "external":
            comp.state = "stopped"
    if components:
        write_stack(state_dir, components)
    return stopped


def database_url(server_url: str, database: str, *, driver: str = "postgresql+asyncpg") -> str:
    """The URL of ``database`` on the server at ``server_url``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server_url)
    return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))
