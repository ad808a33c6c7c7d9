"""Run the ``agora`` CLI in a subprocess, as a person would (tests and the chaos suite).

No pytest import: the chaos suite (``python -m agora_deploy.chaos``) runs outside a test run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_agora(home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the ``agora`` CLI against the stack in ``home`` (external-service URLs unset).

    A detached stack started this way stops itself if the test run dies.
    """
    external = {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_URL"}
    env = {k: v for k, v in os.environ.items() if k not in external}
    env["AGORA_HOME"] = str(home)
    env["COLUMNS"] = "200"
    env["AGORA_EXIT_WITH_PID"] = str(os.getpid())
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "agora_deploy", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
