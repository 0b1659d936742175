"""Outages of the run store: telling one from an answer of the database, saying so, and
waiting one out. Driver failures surface as StoreError naming the URL (password hidden)
and what to check; StoreUnavailableError when the database could not be reached."""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from triggers.error_text import exception_text
from triggers.errors import StoreError, StoreUnavailableError

__all__ = ["log_failure", "persistently", "shown_url", "store_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def store_error(what: str, exc: BaseException) -> StoreError:
    reason = exception_text(exc)
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        reason = f"{type(exc.orig).__name__}: {exc.orig}".strip()
    kind = StoreUnavailableError if _unavailable(exc) else StoreError
    return kind(f"{what}: {reason}. {_what_to_check(exc)}")


def _what_to_check(exc: BaseException | None) -> str:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                "The server's certificate did not verify: give the CA that signed it in "
                "PGSSLROOTCERT, and connect by a name the certificate holds (docs/deploy.md, "
                '"PostgreSQL over TLS").'
            )
        exc = exc.__cause__ or exc.__context__
    return "Check that the database is running and TRIPWIRE_DATABASE_URL is right."


# What a server that is down, restarting or unreachable raises, through any wrapping.
_OUTAGES = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


def _unavailable(exc: BaseException | None) -> bool:
    """True if ``exc``, or what it wraps, says the database could not be reached."""
    while exc is not None:
        if isinstance(exc, _OUTAGES):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc):
            return True  # SQLite: another process held the write lock past busy_timeout
        exc = exc.__cause__ or exc.__context__
    return False


async def persistently(
    what: str, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
) -> T:
    """Await ``call(*args, **kwargs)`` until the store answers: while it is unavailable (an
    outage, a restart), try again with backoff (0.5 s doubling to 10 s), logging ``what``
    was waiting. Other errors propagate."""
    delay = 0.5
    while True:
        try:
            return await call(*args, **kwargs)
        except StoreUnavailableError as exc:
            log.warning(
                "%s: the run store is unavailable, trying again in %.1fs: %s", what, delay, exc
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def log_failure(logger: logging.Logger, message: str, *args: object) -> None:
    """Log the exception being handled: one line for an outage of the run store (that says
    it all, and repeats while the outage lasts), with its traceback for anything else."""
    exc = sys.exc_info()[1]
    if isinstance(exc, StoreUnavailableError):
        logger.warning(message + ": %s", *args, exc)
    else:
        logger.exception(message, *args)


def shown_url(url: str) -> str:
    """``url`` as logs and messages may show it: with its password as ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show none of it
        return "(a database URL that does not parse)"
