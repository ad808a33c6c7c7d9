"""Helpers for tests and test tools (no pytest import): polling, migrations, mail, taps, tokens.

Each module is imported by name (``agora_kit.testing.poll``, ``.db``, ``.mail``, ``.events``,
``.app``, ``.jwt``); docs/testing.md lists them.
"""
