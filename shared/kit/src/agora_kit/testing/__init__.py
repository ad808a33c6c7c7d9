"""Helpers for tests and test tools (no pytest import): polling, migrations, mail, apps, tokens.

Each module is imported by name (``agora_kit.testing.poll``, ``.db``, ``.mail``, ``.app``,
``.jwt``); docs/testing.md lists them.
"""
