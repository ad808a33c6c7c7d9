"""Bounds every service shares for integer input: ids fit a Postgres ``bigint``, offsets capped."""

from __future__ import annotations

from typing import Final

#: The largest Postgres ``bigint``: an id or offset beyond it cannot even be sent to the database.
BIGINT_MAX: Final = 2**63 - 1
#: Deep offsets make Postgres read and discard every skipped row; filters narrow instead.
MAX_OFFSET: Final = 1_000_000


def parse_user_id(value: object) -> int | None:
    """Return a token subject as a user id (a canonical decimal in 1..BIGINT_MAX), else None."""
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    # Canonical only: "007" and "7" must not be two spellings of one subject.
    if len(value) > 19 or value.startswith("0"):
        return None
    number = int(value)
    return number if 1 <= number <= BIGINT_MAX else None
