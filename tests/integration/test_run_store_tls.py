"""The run store on PostgreSQL over TLS, checking the server's certificate (docs/deploy.md,
"PostgreSQL over TLS"): libpq's sslmode in TRIPWIRE_DATABASE_URL, the CA in PGSSLROOTCERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from sensors.runs.store import RunStore
from tests.fixtures.db import PrivatePostgres
from tests.fixtures.tls import Pki
from triggers.errors import StoreError
from triggers.settings import Settings

pytestmark = pytest.mark.integration


def verified_url(server: PrivatePostgres) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/postgres?sslmode=verify-full"


async def test_the_run_store_connects_over_tls_to_a_server_whose_certificate_it_checks(
    tls_postgres: PrivatePostgres, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server with a certificate for 127.0.0.1, and its CA where asyncpg looks
    monkeypatch.setenv("PGSSLROOTCERT", str(pki.ca))
    settings = Settings(home=tmp_path, database_url=verified_url(tls_postgres))
    # When the store opens (and migrates) with sslmode=verify-full
    # Then its connections are encrypted
    query = sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    async with await RunStore.open(settings.store_url) as store, store.engine.connect() as conn:
        assert (await conn.execute(query)).scalar() is True


async def test_a_server_certificate_from_another_ca_is_refused_with_the_cause(
    tls_postgres: PrivatePostgres, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGSSLROOTCERT", str(pki.other_ca))
    settings = Settings(home=tmp_path, database_url=verified_url(tls_postgres))
    with pytest.raises(StoreError) as refused:
        await RunStore.open(settings.store_url)
    message = str(refused.value)
    assert f"127.0.0.1:{tls_postgres.port}" in message
    assert "certificate verify failed" in message and "PGSSLROOTCERT" in message
