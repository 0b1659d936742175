"""PostgreSQL LISTEN/NOTIFY: a table trigger notifies each new row; the row runs a flow.

Run this file once to create the ``shipments`` table and its trigger (it then inserts a
row, which notifies ``shipment_created`` with the row as JSON). Start the engine with
``tripwire dev examples/sources/`` and run it again: each insert runs ``notify_customer``.
NOTIFY is not stored: a notification sent while no source listens is gone.
"""

from __future__ import annotations

import asyncio
import os
import uuid

from triggers import EventSource, trigger

DSN = "postgresql://${PGUSER:-postgres}@${PGHOST:-127.0.0.1}:5432/${PGDATABASE:-postgres}"

shipments = EventSource(
    name="shipment_rows",
    url=DSN,
    channel="shipment_created",
    event="shipment_created",
    id="shipment-{$.id}",
)


@trigger(event="shipment_created")
def notify_customer(customer: str, carrier: str) -> None:
    print(f"telling {customer} that {carrier} has the parcel")


SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    id serial PRIMARY KEY, customer text NOT NULL, carrier text NOT NULL
);
CREATE OR REPLACE FUNCTION notify_shipment() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('shipment_created', row_to_json(NEW)::text);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE OR REPLACE TRIGGER shipment_created AFTER INSERT ON shipments
    FOR EACH ROW EXECUTE FUNCTION notify_shipment();
"""


async def insert_shipment() -> None:
    import asyncpg

    from triggers.sources import resolve_url

    connection = await asyncpg.connect(resolve_url(DSN))
    try:
        await connection.execute(SCHEMA)
        customer = f"c-{uuid.uuid4().hex[:6]}"
        row = await connection.fetchrow(
            "INSERT INTO shipments (customer, carrier) VALUES ($1, 'DHL') RETURNING id", customer
        )
        assert row is not None
        print(f"inserted shipment {row['id']} for {customer}")
    finally:
        await connection.close()


if __name__ == "__main__":
    os.environ.setdefault("PGUSER", "postgres")
    asyncio.run(insert_shipment())
