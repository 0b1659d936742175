"""Bringing the run store's schema up to date, one process at a time.

alembic runs the scripts in ``migrations/`` in the store's transaction, under a
PostgreSQL advisory lock or a file lock for SQLite, so that workers starting
together on a new database do not race.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["upgrade_schema"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x7472_6970  # PostgreSQL advisory lock id ("trip")


async def upgrade_schema(engine: AsyncEngine, url: URL) -> None:
    """Migrate the database ``engine`` connects to (at ``url``) to the newest schema."""
    async with _migration_lock(url), engine.begin() as conn:
        await conn.run_sync(_upgrade)


@contextlib.asynccontextmanager
async def _migration_lock(url: URL) -> AsyncIterator[None]:
    """Serialise migrations of one SQLite file across processes (PostgreSQL locks itself).

    Without it, two workers starting on a new file would both try to create the tables.
    """
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    lock = await asyncio.to_thread(open, f"{url.database}.migrate-lock", "w")
    try:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        yield
    finally:
        lock.close()  # closing releases the lock


def _upgrade(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends: workers starting together migrate one at a time.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK})
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
