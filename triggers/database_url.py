"""TLS in TRIPWIRE_DATABASE_URL as asyncpg takes it.

SQLAlchemy hands each query parameter of a ``postgresql+asyncpg://`` URL to
``asyncpg.connect`` as a keyword. asyncpg names the TLS mode ``ssl`` (the modes are
libpq's: ``disable`` ... ``verify-full``), and finds the CA, client certificate and key
in libpq's variables (``PGSSLROOTCERT``, ``PGSSLCERT``, ``PGSSLKEY``), not in the URL.
So libpq's ``sslmode=`` becomes ``ssl=``, and libpq's file parameters, which asyncpg
would refuse with a ``TypeError``, are refused here with what to write instead.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["asyncpg_url", "url_problem"]

_FILES = {"sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY"}


def _asyncpg(url: str) -> bool:
    return urlsplit(url).scheme == "postgresql+asyncpg"


def url_problem(url: str) -> str | None:
    """What asyncpg would refuse in TRIPWIRE_DATABASE_URL ``url``, and what to write."""
    if not _asyncpg(url):
        return None
    for name, _ in parse_qsl(urlsplit(url).query):
        if name in _FILES:
            return (
                f"TRIPWIRE_DATABASE_URL has {name}=, which asyncpg does not take in the URL: "
                f"give the file in the environment variable {_FILES[name]} instead, with "
                "?ssl=verify-full (or sslmode=verify-full) in the URL."
            )
        if name == "sslpassword":
            return (
                "TRIPWIRE_DATABASE_URL has sslpassword=, which asyncpg does not take in the URL: "
                "give PGSSLKEY a key that is not encrypted."
            )
    return None


def asyncpg_url(url: str) -> str:
    """``url`` with libpq's ``sslmode=`` written as asyncpg's ``ssl=``; others as they are."""
    parts = urlsplit(url)
    if not _asyncpg(url) or "sslmode" not in dict(parse_qsl(parts.query)):
        return url
    query = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))
