"""The one registration point where Agora's services join the stack."""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agora_deploy.launchers.process import LaunchError

#: The command that installs every package of the workspace.
INSTALL_HINT = "`make install` (or `uv sync --all-packages`)"

#: The repository root (deploy/src/agora_deploy/services.py -> repo).
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class ServiceCommand:
    """A command group a service adds to the ``agora`` CLI."""

    name: str
    #: ``module:attribute`` of its ``typer.Typer``.
    typer: str
    help: str


@dataclass(frozen=True)
class ServiceSpec:
    """How the stack runs one service: its ``[tool.agora.service]`` declaration."""

    name: str
    #: ``module:factory`` for ``uvicorn --factory``.
    app: str
    #: Its own database on the shared server.
    database: str
    #: Folder with alembic.ini (relative to the repo root).
    project_dir: str
    #: ``module:class`` of its settings (a ``ServiceSettings``).
    settings: str = ""
    #: Start order (lowest first).
    order: int = 100
    #: Consumer groups it owns (their retry and dead-letter topics are created by `up`).
    consumer_groups: tuple[str, ...] = ()
    #: Traefik rules of the public paths the gateway routes to it.
    routes: tuple[str, ...] = ()
    #: Command groups it adds to the ``agora`` CLI.
    commands: tuple[ServiceCommand, ...] = ()
    #: Extra environment variables.
    env: dict[str, str] = field(default_factory=dict)
    #: Source folders watched by ``--reload``.
    reload_dirs: tuple[str, ...] = ("src",)

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

    @property
    def gateway_rule(self) -> str:
        """The Traefik rule of its public paths (one router per service)."""
        return " || ".join(self.routes)

    def installed(self) -> bool:
        """Whether the service's package is installed in this environment."""
        return importlib.util.find_spec(self.module) is not None


#: Where services live: each folder with a ``[tool.agora.service]`` table is one.
SERVICES_DIR = REPO_ROOT / "services"


def _relative(project: Path) -> str:
    """The project folder relative to the repository (absolute when outside it)."""
    return (
        str(project.relative_to(REPO_ROOT)) if project.is_relative_to(REPO_ROOT) else str(project)
    )


def _declaration(project: Path) -> ServiceSpec | None:
    """The service declared in ``project/pyproject.toml``, if it declares one."""
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        return None
    table = tomllib.loads(pyproject.read_text()).get("tool", {}).get("agora", {}).get("service")
    if table is None:
        return None
    try:
        return ServiceSpec(
            name=table["name"],
            app=table["app"],
            database=table.get("database", table["name"]),
            project_dir=_relative(project),
            settings=table["settings"],
            order=int(table.get("order", 100)),
            consumer_groups=tuple(table.get("consumer_groups", ())),
            routes=tuple(table.get("routes", ())),
            commands=tuple(ServiceCommand(**cmd) for cmd in table.get("commands", ())),
        )
    except (KeyError, TypeError) as exc:
        raise LaunchError(f"{pyproject}: bad [tool.agora.service] table: {exc!r}") from exc


def discover(root: Path = SERVICES_DIR) -> tuple[ServiceSpec, ...]:
    """Every service declared under ``root``, in start order."""
    if not root.is_dir():  # installed without its repository: nothing to run
        return ()
    found = [spec for project in sorted(root.iterdir()) if (spec := _declaration(project))]
    return tuple(sorted(found, key=lambda spec: (spec.order, spec.name)))


#: Every service of Agora, in start order (users first: the others read its JWKS).
REGISTRY: tuple[ServiceSpec, ...] = discover()


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
