"""Which dependency an exception says is down (503) or which value it refused (422)."""

from __future__ import annotations

import errno
import socket

import httpx
import redis.exceptions
import sqlalchemy.exc

#: ``OSError`` numbers that mean "could not reach it", as opposed to local I/O failures.
_CONNECT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ECONNRESET}
)


#: Exception classes that may mean a dependency is down (``dependency_down`` decides).
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.DBAPIError,
    sqlalchemy.exc.TimeoutError,
    httpx.TransportError,
    OSError,
)


#: SQLSTATEs of a server that is unreachable or restarting: connection exceptions (08),
#: shutdown, crash and "starting up" (57P01-57P03), too many connections (53300).
_DOWN_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def _sqlstate(orig: BaseException | None) -> str:
    """The SQLSTATE of a driver error (asyncpg's, as SQLAlchemy's adapter or its cause)."""
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return ""


def dependency_down(exc: BaseException) -> str | None:
    """Name the dependency when ``exc`` means it is unreachable or too slow, else None."""
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return "redis"
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return "database"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        orig = exc.orig
        if (
            exc.connection_invalidated
            or isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError)
            or isinstance(orig, OSError | TimeoutError)
            or type(orig).__name__ in {"CannotConnectNowError", "TooManyConnectionsError"}
            or _sqlstate(orig).startswith(_DOWN_SQLSTATE_PREFIXES)
        ):
            return "database"
        return None
    if isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError | socket.gaierror) or (
        isinstance(exc, OSError) and exc.errno in _CONNECT_ERRNOS
    ):
        return _origin(exc)
    return None


def unstorable_value(exc: BaseException) -> str | None:
    """Name the kind when ``exc`` means the database refused a value the client sent, else None.

    A backstop: SQLSTATE class 22 (data exception: out of range, NUL, bad encoding) from the
    server, and asyncpg's client-side refusal to encode an argument (an int beyond 64 bits, a
    lone surrogate), which it raises before anything is sent.
    """
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        orig = exc.orig
        code = _sqlstate(orig)
        if code.startswith("22"):
            return f"SQLSTATE {code}"
        cause = getattr(orig, "__cause__", None)
        if type(orig).__name__ == "DataError" or isinstance(
            cause, OverflowError | UnicodeEncodeError
        ):
            return type(cause or orig).__name__
        return None
    if isinstance(exc, OverflowError | UnicodeEncodeError) and _origin(exc) == "database":
        return type(exc).__name__
    return None


def _origin(exc: BaseException) -> str:
    """Guess which client raised a bare socket error (asyncpg's connect does) from its frames."""
    tb = exc.__traceback__
    origin = "upstream"
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(("asyncpg", "sqlalchemy")):
            origin = "database"
        elif module.startswith("redis"):
            origin = "redis"
        elif module.startswith(("httpx", "httpcore")):
            origin = "http"
        tb = tb.tb_next
    return origin
