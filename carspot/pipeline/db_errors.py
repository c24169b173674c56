"""Which database errors are worth waiting out and which are the message's fault: the worker's one policy point.

Retrying a refusal the database will repeat forever (a value too long for an index row, bad data) turns one
message into a poison pill that stops the whole partition, so those are dead-lettered. What a later attempt can
succeed at is retried::

    transient (retry)                          permanent (dead-letter the record)
    ─────────────────                          ──────────────────────────────────
    InterfaceError, a lost connection          SQLSTATE 22 data exception, 23 integrity violation,
    SQLSTATE 08 connection, 40 rollback        42 syntax / undefined object, 54 program limit exceeded
    (deadlock, serialization), 53 insufficient  (e.g. an index row over ~2.7 KB), any other DBAPIError
    resources, 57 operator intervention        with a SQLSTATE not on the left
    (shutdown), 58 system error, and an
    OperationalError without a SQLSTATE
    (SQLite's "database is locked", a refused
    connection)
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57", "58"})


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of a wrapped driver error (psycopg's ``sqlstate``), if it has one."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    code = getattr(orig, "sqlstate", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def is_transient(exc: BaseException) -> bool:
    """True when waiting and trying again may succeed (the database or the connection is the problem)."""
    if not isinstance(exc, DBAPIError):
        return False
    if isinstance(exc, InterfaceError) or exc.connection_invalidated:
        return True
    code = sqlstate(exc)
    if code is None:
        return isinstance(exc, OperationalError)
    return code[:2] in TRANSIENT_SQLSTATE_CLASSES


__all__ = ["TRANSIENT_SQLSTATE_CLASSES", "is_transient", "sqlstate"]
