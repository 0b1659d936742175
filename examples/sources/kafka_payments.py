"""Kafka: a payment service's own topic, in its own message format, mapped by config.

The payments service writes ``{"meta": {"type": ..., "at": ...}, "data": {...}}`` to the
``payments`` topic. The source names the event from ``meta.type``, takes its time from
``meta.at`` and its id from the ``message-id`` header, and passes on ``data`` only.
``kafka://`` without brokers reads tripwire's own cluster; another cluster is
``kafka://broker-1:9092,broker-2:9092`` (here: ``PAYMENTS_KAFKA``).

Start the engine with ``tripwire dev examples/sources/`` and run this file.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from triggers import EventSource, trigger

payments = EventSource(
    name="payments_topic",
    url="kafka://${PAYMENTS_KAFKA:-}",
    topic="payments",
    group="tripwire-payments",
    start="all",  # a new group reads what the topic already holds
    event="$.meta.type",
    time="$.meta.at",
    id="{headers.message-id}",
    payload="$.data",
)


@trigger(event="payment.settled")
def reconcile_payment(payment: str, amount: float, currency: str = "EUR") -> None:
    print(f"reconciling {payment}: {amount} {currency}")


async def publish_payment() -> None:
    import os

    from aiokafka import AIOKafkaProducer

    from triggers.settings import get_settings

    bootstrap = os.environ.get("PAYMENTS_KAFKA") or get_settings().require_bootstrap()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        payment = f"pay-{uuid.uuid4().hex[:6]}"
        message = {
            "meta": {"type": "payment.settled", "at": time.time()},
            "data": {"payment": payment, "amount": 99.9, "currency": "EUR"},
        }
        await producer.send_and_wait(
            "payments", json.dumps(message).encode(), headers=[("message-id", payment.encode())]
        )
        print(f"published {message} to the payments topic at {bootstrap}")
    finally:
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(publish_payment())
