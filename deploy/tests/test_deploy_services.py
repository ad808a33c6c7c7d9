"""Which services a run starts, and a clear stop when one of them is not installed."""

from __future__ import annotations

import importlib.util
import tomllib

import pytest
from agora_deploy import services
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
