"""Telling an outage of the run store from an answer, and waiting one out."""

from __future__ import annotations

import sqlite3
import ssl

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from sensors.runs import outages as outages_module
from sensors.runs.outages import persistently, shown_url, store_error
from triggers.errors import StoreError, StoreUnavailableError


def _wrapped(cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("the driver said no") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        _wrapped(ConnectionResetError(104, "reset by peer")),
        OperationalError("UPDATE runs", {}, sqlite3.OperationalError("database is locked")),
    ],
    ids=["refused", "reset, wrapped", "sqlite locked"],
)
def test_a_connection_failure_is_an_outage(exc: BaseException) -> None:
    assert isinstance(store_error("the run store failed", exc), StoreUnavailableError)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: runs")),
    ],
    ids=["constraint", "no table"],
)
def test_an_answer_of_the_database_is_not_an_outage(exc: BaseException) -> None:
    error = store_error("the run store failed", exc)
    assert isinstance(error, StoreError) and not isinstance(error, StoreUnavailableError)


async def test_persistently_waits_out_an_outage_and_passes_other_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(outages_module.asyncio, "sleep", sleep)
    calls = iter([StoreUnavailableError("down"), StoreUnavailableError("down"), "answer"])

    async def call(x: int) -> str:
        result = next(calls)
        if isinstance(result, BaseException):
            raise result
        return f"{result} {x}"

    assert await persistently("a test", call, 7) == "answer 7"
    assert waits == [0.5, 1.0]

    async def refused() -> None:
        raise StoreError("no such run")

    with pytest.raises(StoreError, match="no such run"):
        await persistently("a test", refused)


def test_a_shown_url_hides_the_password() -> None:
    assert (
        shown_url("postgresql+asyncpg://u:s3cret@db:5432/t")
        == "postgresql+asyncpg://u:***@db:5432/t"
    )
    assert "s3cret" not in shown_url("not a url s3cret")


def test_a_server_certificate_that_does_not_verify_says_where_the_ca_goes() -> None:
    refused = ssl.SSLCertVerificationError(1, "certificate verify failed")
    message = str(store_error("cannot open the run store at postgresql+asyncpg://db/tw", refused))
    assert "certificate verify failed" in message and "PGSSLROOTCERT" in message
    assert "Check that the database is running" not in message
