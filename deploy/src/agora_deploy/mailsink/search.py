"""A subset of Mailpit's search filters: to:, from:, cc:, bcc:, subject:, is:read and words."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agora_deploy.mailsink.message import StoredMessage

_TERM = re.compile(r'(?P<neg>[-!])?(?:(?P<key>[a-z-]+):)?(?:"(?P<quoted>[^"]*)"|(?P<bare>\S+))')


@dataclass(frozen=True, slots=True)
class _Term:
    negated: bool
    test: Callable[[StoredMessage], bool]

    def __call__(self, message: StoredMessage) -> bool:
        return self.test(message) != self.negated


def _addressed(*fields: str) -> Callable[[str], Callable[[StoredMessage], bool]]:
    def build(needle: str) -> Callable[[StoredMessage], bool]:
        return lambda m: any(a.matches(needle) for a in m.addresses(*fields))

    return build


def _is(value: str) -> Callable[[StoredMessage], bool]:
    if value == "read":
        return lambda m: m.read
    if value == "unread":
        return lambda m: not m.read
    return lambda m: False


def _has(value: str) -> Callable[[StoredMessage], bool]:
    if value in ("attachment", "attachments"):
        return lambda m: bool(m.parsed.attachments)
    return lambda m: False


def _words(needle: str) -> Callable[[StoredMessage], bool]:
    def test(m: StoredMessage) -> bool:
        p = m.parsed
        haystack = " ".join(
            [
                p.subject,
                p.text,
                p.message_id,
                *(
                    f"{a.name} {a.address}"
                    for a in m.addresses("from", "to", "cc", "bcc", "reply-to")
                ),
            ]
        ).lower()
        return needle in haystack

    return test


_FILTERS: dict[str, Callable[[str], Callable[[StoredMessage], bool]]] = {
    "to": _addressed("to"),
    "from": _addressed("from"),
    "cc": _addressed("cc"),
    "bcc": _addressed("bcc"),
    "reply-to": _addressed("reply-to"),
    "addressed": _addressed("from", "to", "cc", "bcc", "reply-to"),
    "subject": lambda needle: lambda m: needle in m.subject.lower(),
    "message-id": lambda needle: lambda m: needle == m.message_id.lower(),
    "is": _is,
    "has": _has,
    "tag": lambda _needle: lambda _m: False,
}


def compile_query(query: str) -> Callable[[StoredMessage], bool]:
    """Turn a search string into a predicate; every term must match (negate with - or !)."""
    terms: list[_Term] = []
    for match in _TERM.finditer(query.strip()):
        key = match["key"]
        value = (match["quoted"] if match["quoted"] is not None else match["bare"]).lower()
        if key is not None and key in _FILTERS:
            test = _FILTERS[key](value)
        else:
            word = match[0].lstrip("-!") if match["neg"] else match[0]
            test = _words(word.strip('"').lower())
        terms.append(_Term(negated=match["neg"] is not None, test=test))
    return lambda m: all(term(m) for term in terms)
