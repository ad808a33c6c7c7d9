"""The one way a service learns its version: its installed distribution's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(distribution: str) -> str:
    """The installed version of ``distribution`` (``agora-users``), ``0.0.0`` when not installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0.0.0"
