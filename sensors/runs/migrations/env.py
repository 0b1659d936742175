"""Alembic environment, kept in the package so that no alembic.ini is needed.

``RunStore.open`` runs ``command.upgrade`` inside ``AsyncConnection.run_sync`` and hands
over that (sync-facing) connection as ``config.attributes["connection"]``. The migration
therefore runs in the store's transaction and, on PostgreSQL, under its advisory lock,
so processes migrating one database together take turns; alembic's version table makes
the second pass a no-op.
"""

from alembic import context

from sensors.runs.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
