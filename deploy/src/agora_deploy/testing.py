"""Pytest fixtures that start the embedded stack (filled in by the launcher work)."""
