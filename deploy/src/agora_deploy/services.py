"""The one registration point where Agora's services join the stack."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agora_deploy.launchers.process import LaunchError

#: The command that installs every package of the workspace.
INSTALL_HINT = "`make install` (or `uv sync --all-packages`)"

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

    @property
    def package(self) -> str:
        """The service's distribution name (``agora-users``)."""
        return f"agora-{self.name}"

    @property
    def module(self) -> str:
        """The service's top-level package."""
        return self.app.split(":", 1)[0].split(".", 1)[0]

    def installed(self) -> bool:
        """Whether the service's package is installed in this environment."""
        return importlib.util.find_spec(self.module) is not None


#: Every service of Agora, in start order (users first: the others read its JWKS).
REGISTRY: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="users",
        app="agora_users.main:create_app",
        database="users",
        project_dir="services/users",
        reload_dirs=("src",),
    ),
    ServiceSpec(
        name="items",
        app="agora_items.main:create_app",
        database="items",
        project_dir="services/items",
        consumer_groups=("items",),
        reload_dirs=("src",),
    ),
    ServiceSpec(
        name="notifier",
        app="agora_notifier.main:create_app",
        database="notifier",
        project_dir="services/notifier",
        consumer_groups=("notifier",),
        reload_dirs=("src",),
    ),
)


def available_services() -> list[ServiceSpec]:
    """The registered services whose packages are installed (they join as they arrive)."""
    return [spec for spec in REGISTRY if spec.installed()]


def missing_services() -> list[ServiceSpec]:
    """The registered services whose packages are not installed."""
    return [spec for spec in REGISTRY if not spec.installed()]


def selected_services(names: Sequence[str] | None) -> list[ServiceSpec]:
    """The services a run starts: all registered ones (None) or the named subset.

    Fails before anything starts when a service it needs is not installed, rather than bringing
    up the infrastructure with no service and no word.
    """
    if names is None:
        wanted = list(REGISTRY)
    else:
        known = {spec.name for spec in REGISTRY}
        unknown = sorted(set(names) - known)
        if unknown:
            raise LaunchError(
                f"unknown service(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        wanted = [spec for spec in REGISTRY if spec.name in names]
    missing = [spec for spec in wanted if not spec.installed()]
    if missing:
        packages = ", ".join(spec.package for spec in missing)
        raise LaunchError(
            f"service package(s) not installed: {packages}; install them with {INSTALL_HINT}"
        )
    return wanted
