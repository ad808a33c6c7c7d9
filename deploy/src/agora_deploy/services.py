"""The one registration point where Agora's services join the stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: The repository root (deploy/src/agora_deploy/services.py -> repo).
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ServiceSpec:
    """How the stack runs one service."""

    name: str
    #: ``module:factory`` for ``uvicorn --factory``.
    app: str
    #: Its own database on the shared server.
    database: str
    #: Folder with alembic.ini (relative to the repo root).
    project_dir: str
    #: Consumer groups it owns (their retry and dead-letter topics are created by `up`).
    consumer_groups: tuple[str, ...] = ()
    #: Extra environment variables.
    env: dict[str, str] = field(default_factory=dict)
    #: Source folders watched by ``--reload``.
    reload_dirs: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """Absolute path of the service's project folder."""
        return REPO_ROOT / self.project_dir


#: Services in start order. Each service appends its spec here as it arrives.
SERVICES: list[ServiceSpec] = []
