"""NATS: a flow triggered by what the shop publishes on NATS JetStream.

The source is declared in nats.sources.yaml next to this file. Start the engine with
``tripwire dev examples/sources/`` and run this file to publish an order on NATS, as the
shop does; ``tripwire runs list`` then shows a run of ``pack_order``.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

from triggers import trigger


@trigger(event="shop.placed")
def pack_order(order_id: str, amount: float) -> None:
    print(f"packing order {order_id} ({amount:.2f})")


async def publish_order() -> None:
    import nats

    client = await nats.connect(f"nats://{os.environ.get('NATS_HOST', '127.0.0.1:4222')}")
    try:
        js = client.jetstream()
        await js.add_stream(name="SHOP_ORDERS", subjects=["shop.orders.>"])  # as the shop does
        order = {"order_id": f"o-{uuid.uuid4().hex[:6]}", "status": "placed", "amount": 42.5}
        ack = await js.publish(
            "shop.orders.placed",
            json.dumps(order).encode(),
            headers={"Nats-Msg-Id": order["order_id"]},
        )
        print(f"published {order} on shop.orders.placed (stream sequence {ack.seq})")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(publish_order())
