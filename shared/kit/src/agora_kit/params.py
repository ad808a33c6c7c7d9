"""What every service shares for integer input and paging: ids fit a ``bigint``, pages bounded."""

from __future__ import annotations

from typing import Annotated, Final, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, ConfigDict, Field

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


async def _skip(
    skip: Annotated[
        int | None, Query(ge=0, le=MAX_OFFSET, description="Items to skip (default 0).")
    ] = None,
    offset: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_OFFSET,
            deprecated=True,
            description="Deprecated alias of `skip` until 0.3 (`skip` wins when both are given).",
        ),
    ] = None,
) -> int:
    """``skip``, or its deprecated alias ``offset``; ``skip`` wins when both are given."""
    return skip if skip is not None else (offset or 0)


#: How many items a listing skips: ``skip`` everywhere (``offset`` still accepted, deprecated).
SkipDep = Annotated[int, Depends(_skip)]


ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a listing and how many match in all (a service subclasses it by name).

    ``class DeliveryPage(Page[DeliveryPublic])`` keeps the schema's name in the OpenAPI document.
    """

    model_config = ConfigDict(frozen=True)

    items: list[ItemT]
    total: int
    skip: int
    limit: int
    #: Echoes ``skip`` for clients of the deprecated ``offset`` parameter (``SkipDep``).
    offset: int = Field(deprecated="Use `skip`; `offset` goes in version 0.3.")
