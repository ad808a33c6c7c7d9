"""schemathesis against every service's OpenAPI document, as a user and as an admin.

Marked ``fuzz``: `make test` leaves it out; `make fuzz-ci` runs a bounded pass (a few
minutes) and `make fuzz` a long one (``AGORA_FUZZ_EXAMPLES``). The bar is 0 failures of any
check: no server error, no undocumented status or content type, no response off its schema,
no schema-valid request refused with 422, no schema-invalid request accepted, truthful 405s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from agora_deploy.testing import SystemStack, run_agora

pytestmark = pytest.mark.fuzz

SERVICES = ("users", "items", "notifier")
#: Examples per operation and phase: `make fuzz-ci` uses 10, `make fuzz` 1000.
EXAMPLES = int(os.environ.get("AGORA_FUZZ_EXAMPLES", "10"))
#: These end the session whose token the run carries (logout, account deletion, password and
#: email change revoke it): fuzzed with them, every later call would only see 401.
TOKEN_ENDING = (
    "/api/v1/auth/logout",
    "/api/v1/users/me",
    "/api/v1/users/me/password",
    "/api/v1/users/me/email",
)
#: Statuses a schema-valid request may get for reasons no schema can state: an unknown
#: one-time token or password (400), a stale ETag (412), a state conflict (409: a taken email,
#: a PATCH whose price does not fit the item's stored currency), and 401/403/404/429. Each is
#: documented on its operation, so the status-code check still holds them to the document.
#: No check is switched off (``--checks all``).
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "412", "429"]

[generation]
# Every service refuses NUL in any string with a 422 (the kit's input guard; issue 13).
allow-x00 = false
"""
PASSWORD = "Fuzz-pass-0123456789"


def _token(gateway: str, email: str) -> str:
    with httpx.Client(base_url=gateway, timeout=15) as client:
        response = client.post(
            "/api/v1/auth/token",
            data={"grant_type": "password", "username": email, "password": PASSWORD},
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def tokens(system_stack: SystemStack) -> dict[str, str]:
    """An access token of a plain user and one of an administrator."""
    admin = run_agora(
        system_stack.infra.state_dir,
        "admin",
        "create",
        "--email",
        "fuzz-admin@example.com",
        "--password",
        PASSWORD,
        "--name",
        "Fuzz admin",
        "--verified",
    )
    assert admin.returncode == 0, admin.stdout + admin.stderr
    with httpx.Client(base_url=system_stack.gateway, timeout=15) as client:
        user = client.post(
            "/api/v1/users",
            json={"email": "fuzz-user@example.com", "password": PASSWORD, "name": "Fuzz user"},
        )
        assert user.status_code == 201, user.text
    return {
        "user": _token(system_stack.gateway, "fuzz-user@example.com"),
        "admin": _token(system_stack.gateway, "fuzz-admin@example.com"),
    }


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The schemathesis settings above, as a file."""
    path = tmp_path_factory.mktemp("fuzz") / "schemathesis.toml"
    path.write_text(CONFIG)
    return path


ROLES = ("user", "admin")


@dataclass
class Run:
    """One schemathesis process and the file its report goes to."""

    process: subprocess.Popen[bytes]
    report: Path


@pytest.fixture(scope="module")
def runs(
    system_stack: SystemStack,
    tokens: dict[str, str],
    config_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[tuple[str, str], Run]]:
    """The six schemathesis runs (3 services x 2 tokens), all started at once."""
    # A run and its service take turns on a request, so one run at a time leaves a core idle.
    excluded = [arg for path in TOKEN_ENDING for arg in ("--exclude-path", path)]
    started: dict[tuple[str, str], Run] = {}
    try:
        for service in SERVICES:
            for role in ROLES:
                # Each run keeps its own cache and report in its folder, not in the repository.
                folder = tmp_path_factory.mktemp(f"fuzz-{service}-{role}")
                command = [
                    sys.executable, "-m", "schemathesis.cli", "--config-file", str(config_file),
                    "run", f"{system_stack.service_url(service)}/openapi.json",
                    "--header", f"Authorization: Bearer {tokens[role]}",
                    "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                    "--max-examples", str(EXAMPLES), "--request-timeout", "10", "--no-color",
                    *excluded,
                ]  # fmt: skip
                report = folder / "report.txt"
                with report.open("wb") as out:
                    process = subprocess.Popen(
                        command, cwd=folder, stdout=out, stderr=subprocess.STDOUT
                    )
                started[(service, role)] = Run(process, report)
        yield started
    finally:
        for run in started.values():
            if run.process.poll() is None:
                run.process.kill()
            run.process.wait()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("service", SERVICES)
def test_openapi_holds_under_fuzzing(
    runs: dict[tuple[str, str], Run], capsys: pytest.CaptureFixture[str], service: str, role: str
) -> None:
    run = runs[(service, role)]
    # Bounded by pytest-timeout: 300 s per test in `make fuzz-ci`, 7200 s in `make fuzz`.
    returncode = run.process.wait()
    report = run.report.read_text(errors="replace")
    assert returncode == 0, f"schemathesis on {service} as {role}:\n{report[-6000:]}"
    cases = re.search(r"(\d+) generated", report)
    with capsys.disabled():
        print(
            f"\nschemathesis on {service} as {role}: {cases[1] if cases else '?'} cases, 0 failures"
        )
