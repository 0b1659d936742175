"""RabbitMQ: the billing system queues invoices; each one books itself through a flow.

Start the engine with ``tripwire dev examples/sources/`` and run this file: it publishes
an invoice to the durable ``invoices`` queue with a message id, as billing does. The
password comes from the environment where the source runs (``${RABBITMQ_PASSWORD:-guest}``),
so it is never stored with the deployed source.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

from triggers import EventSource, trigger

invoices = EventSource(
    name="billing_invoices",
    url="amqp://guest:${RABBITMQ_PASSWORD:-guest}@127.0.0.1:5672/",
    queue="invoices",
    event="invoice_received",
)


@trigger(event="invoice_received")
def book_invoice(invoice: str, total: float) -> None:
    print(f"booking invoice {invoice}: {total:.2f}")


async def publish_invoice() -> None:
    import aio_pika

    password = os.environ.get("RABBITMQ_PASSWORD", "guest")
    connection = await aio_pika.connect(f"amqp://guest:{password}@127.0.0.1:5672/")
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("invoices", durable=True)
        invoice = {"invoice": f"inv-{uuid.uuid4().hex[:6]}", "total": 1280.0}
        await channel.default_exchange.publish(
            aio_pika.Message(json.dumps(invoice).encode(), message_id=invoice["invoice"]),
            routing_key="invoices",
        )
    print(f"published {invoice} to the invoices queue")


if __name__ == "__main__":
    asyncio.run(publish_invoice())
