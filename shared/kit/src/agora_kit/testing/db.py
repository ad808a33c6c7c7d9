"""Migrate a test database with a service's own Alembic chain, the way ``agora up`` does."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def migrate(database_url: str, project_dir: Path, *, timeout_s: float = 120.0) -> None:
    """Run ``alembic upgrade head`` in ``project_dir`` against ``database_url`` (a subprocess).

    A subprocess, as the launcher runs it: the chain's ``env.py`` starts its own event loop, and
    a test sees exactly the schema a deployment gets. Raises ``RuntimeError`` with the output.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "upgrade",
        "head",
        cwd=project_dir,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RuntimeError(f"migrations in {project_dir} took longer than {timeout_s:g}s") from None
    if proc.returncode != 0:
        text = out.decode(errors="replace")[-4000:]
        raise RuntimeError(f"migrations in {project_dir} failed:\n{text}")
