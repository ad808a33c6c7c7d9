"""Which services a run starts, and a clear stop when one of them is not installed."""

from __future__ import annotations

import importlib
import importlib.util
import tomllib
from pathlib import Path

import pytest
from agora_deploy import gateway_config, services
from agora_deploy.launchers.gateway import DYNAMIC_CONFIG
from agora_deploy.launchers.process import LaunchError
from agora_deploy.services import REGISTRY, REPO_ROOT, ServiceSpec, selected_services


def _without(monkeypatch: pytest.MonkeyPatch, *absent: str) -> None:
    """Pretend the named services' packages are not installed."""
    real = ServiceSpec.installed

    def installed(spec: ServiceSpec) -> bool:
        return spec.name not in absent and real(spec)

    monkeypatch.setattr(ServiceSpec, "installed", installed)


def test_every_registered_service_is_installed_here() -> None:
    for spec in REGISTRY:
        assert importlib.util.find_spec(spec.module) is not None, spec.package
    assert services.missing_services() == []
    assert selected_services(None) == list(REGISTRY)


def test_plain_uv_sync_installs_every_service() -> None:
    """The workspace root depends on each registered service, so `uv sync` installs them."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    dependencies = set(root["project"]["dependencies"])
    sources = root["tool"]["uv"]["sources"]
    for spec in REGISTRY:
        project = tomllib.loads((spec.path / "pyproject.toml").read_text())
        assert project["project"]["name"] == spec.package
        assert spec.package in dependencies
        assert sources[spec.package] == {"workspace": True}


def test_a_missing_service_stops_the_run_naming_package_and_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "items", "notifier")
    with pytest.raises(LaunchError) as caught:
        selected_services(None)
    message = str(caught.value)
    assert "agora-items, agora-notifier" in message
    assert "agora-users" not in message
    assert "make install" in message
    assert "uv sync --all-packages" in message


def test_an_installed_subset_runs_even_when_others_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without(monkeypatch, "notifier")
    assert [spec.name for spec in selected_services(("users", "items"))] == ["users", "items"]
    assert selected_services(()) == []
    with pytest.raises(LaunchError, match="agora-notifier"):
        selected_services(("users", "notifier"))


def test_an_unknown_service_name_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"unknown service.*nope"):
        selected_services(("users", "nope"))


def test_each_service_declares_itself_once_in_its_pyproject() -> None:
    """The registry is read from `[tool.agora.service]`; each declaration names real objects."""
    assert [spec.name for spec in REGISTRY] == ["users", "items", "notifier"]
    for spec in REGISTRY:
        assert spec.project_dir == f"services/{spec.name}"
        assert spec.routes, spec.name
        for target in (spec.app, spec.settings, *(c.typer for c in spec.commands)):
            module_name, attribute = target.split(":", 1)
            assert hasattr(importlib.import_module(module_name), attribute), target


FOURTH = """
[project]
name = "agora-ledger"

[tool.agora.service]
name = "ledger"
app = "agora_ledger.main:create_app"
settings = "agora_ledger.config:LedgerSettings"
order = 25
consumer_groups = ["ledger"]
routes = ["PathPrefix(`/api/v1/ledger`)"]

[[tool.agora.service.commands]]
name = "ledger"
typer = "agora_ledger.cli:app"
help = "The ledger."
"""


def test_a_fourth_service_joins_the_stack_and_the_gateway_by_its_declaration(
    tmp_path: Path,
) -> None:
    """Discovery and the gateway's generated block need nothing but the new declaration."""
    root = tmp_path / "services"
    for spec in REGISTRY:
        (root / spec.name).mkdir(parents=True)
        (root / spec.name / "pyproject.toml").write_text((spec.path / "pyproject.toml").read_text())
    (root / "ledger").mkdir()
    (root / "ledger" / "pyproject.toml").write_text(FOURTH)
    (root / "not-a-service").mkdir()
    (root / "not-a-service" / "pyproject.toml").write_text('[project]\nname = "x"\n')

    found = services.discover(root)
    assert [spec.name for spec in found] == ["users", "items", "ledger", "notifier"]
    ledger = found[2]
    assert ledger.database == "ledger"
    assert ledger.consumer_groups == ("ledger",)
    assert ledger.commands[0].typer == "agora_ledger.cli:app"
    assert not ledger.installed()

    block = gateway_config.generated_block(found)
    assert '$services := list "users" "items" "ledger" "notifier"' in block
    assert '"ledger" "PathPrefix(`/api/v1/ledger`)"' in block


def test_a_bad_declaration_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text('[tool.agora.service]\nname = "x"\n')
    with pytest.raises(LaunchError, match=r"broken/pyproject.toml: bad \[tool.agora.service\]"):
        services.discover(tmp_path)


def test_the_gateway_template_is_generated_from_the_declarations() -> None:
    """deploy/gateway/dynamic.yml's generated block is current (else run the module)."""
    text = DYNAMIC_CONFIG.read_text()
    assert gateway_config.render(text) == text, "run: python -m agora_deploy.gateway_config"


def test_mypy_sees_every_declared_service() -> None:
    """mypy's path cannot be generated: forgetting a service's entry fails here, not in CI."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    mypy_path = root["tool"]["mypy"]["mypy_path"].split(":")
    for spec in REGISTRY:
        assert f"$MYPY_CONFIG_FILE_DIR/{spec.project_dir}/src" in mypy_path, spec.name
