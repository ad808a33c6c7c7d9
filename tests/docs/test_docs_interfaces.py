"""docs/interfaces.md lists every environment variable the code reads.

The names come from the code, not from a list kept by hand: the fields of every settings class
(as pydantic-settings derives them) and the variables the launcher and the gateway read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agora_items.config import ItemsSettings
from agora_kit.settings import ServiceSettings
from agora_notifier.config import NotifierSettings
from agora_users.config import UsersSettings
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "interfaces.md"
SETTINGS: tuple[type[BaseSettings], ...] = (
    ServiceSettings,
    UsersSettings,
    ItemsSettings,
    NotifierSettings,
)
#: Where the launcher and the kit read variables outside the settings classes.
READERS = (
    "deploy/src/agora_deploy/cli.py",
    "deploy/src/agora_deploy/cli_more.py",
    "deploy/src/agora_deploy/stack.py",
    "deploy/src/agora_deploy/infra.py",
    "deploy/src/agora_deploy/up.py",
    "deploy/src/agora_deploy/supervisor_run.py",
    "deploy/src/agora_deploy/containers.py",
    "deploy/src/agora_deploy/container_infra.py",
    "deploy/src/agora_deploy/launchers/storage.py",
    "shared/kit/src/agora_kit/tracing.py",
    "deploy/src/agora_deploy/launchers/kafka.py",
    "deploy/src/agora_deploy/launchers/gateway.py",
    "shared/kit/src/agora_kit/metrics.py",
)
_READS = re.compile(
    r"""(?:environ|env)\.(?:get|pop|setdefault)\(\s*"([A-Z][A-Z0-9_]+)"   # env.get("X")
    |env\["([A-Z][A-Z0-9_]+)"\]\s*=                                      # env["X"] = ...
    |envvar="([A-Z][A-Z0-9_]+)"                                         # typer options
    |^[A-Z_]+(?:_ENV|_SETTING)\s*=\s*"([A-Z][A-Z0-9_]+)"                # NAME_ENV = "X"
    |ImageChoice\(\s*"([A-Z][A-Z0-9_]+)"                                # image settings
    """,
    re.VERBOSE | re.MULTILINE,
)
_GATEWAY_READS = re.compile(r'env\s+"([A-Z][A-Z0-9_]+)"')


def settings_variables(cls: type[BaseSettings]) -> set[str]:
    """The variable each field of ``cls`` is read from (its alias, or prefix + name)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def code_variables() -> set[str]:
    """Every variable the settings classes, the launcher and the gateway config read."""
    names: set[str] = set()
    for cls in SETTINGS:
        names |= settings_variables(cls)
    for path in READERS:
        for match in _READS.finditer((REPO / path).read_text()):
            names.add(next(group for group in match.groups() if group))
    names |= set(_GATEWAY_READS.findall((REPO / "deploy/gateway/dynamic.yml").read_text()))
    return names


def test_the_scan_finds_the_variables_it_should() -> None:
    names = code_variables()
    # One from each kind of reader, so a regex that stops matching fails here, not silently.
    for expected in (
        "DATABASE_URL",  # shared settings, by alias
        "USERS_KEYS_DIR",  # a service's prefix
        "AGORA_HOME",  # the launcher
        "AGORA_GATEWAY_PORT",  # a CLI option
        "AGORA_BROKER_STORAGE",  # a *_ENV constant
        "AGORA_TEST_INFRA",  # a *_SETTING constant
        "AGORA_KAFKA_IMAGE",  # an image choice
        "PROMETHEUS_MULTIPROC_DIR",  # the kit's metrics
        "GATEWAY_RATE_AVERAGE",  # the gateway's config
    ):
        assert expected in names


@pytest.mark.parametrize("name", sorted(code_variables()))
def test_every_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC.read_text(), f"{name} is read by the code but not in {DOC.name}"
