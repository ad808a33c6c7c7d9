"""Entity tags from the item version, and the RFC 9110 §13.1 precondition comparisons."""

from __future__ import annotations

import re

# One entity tag in a list: optional weak prefix, then a quoted opaque string.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def etag_for(version: int) -> str:
    """Return the strong ETag of an item version: the representation changes with it."""
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]] | None:
    """Parse a list of entity tags into (weak, opaque) pairs; None if it is malformed."""
    tags: list[tuple[bool, str]] = []
    position = 0
    header = header.strip()
    while position < len(header):
        match = _ENTITY_TAG.match(header, position)
        if match is None:
            return None
        tags.append((match.group(1) is not None, match.group(2)))
        position = match.end()
    return tags


def if_match_holds(header: str | None, etag: str) -> bool:
    """``If-Match``: strong comparison; absent or ``*`` holds for an existing item."""
    if header is None or header.strip() == "*":
        return True
    tags = _tags(header)
    # A malformed list matches nothing: the write must not go ahead on a guess.
    return tags is not None and any(not weak and opaque == etag for weak, opaque in tags)


def if_none_match_hits(header: str | None, etag: str) -> bool:
    """``If-None-Match``: weak comparison; True when the client's copy is current (304)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    tags = _tags(header)
    return tags is not None and any(opaque == etag for _weak, opaque in tags)
