"""MQTT: machines report temperatures on Mosquitto; an overheating one triggers a flow.

Start the engine with ``tripwire dev examples/sources/`` and run this file: it publishes
one reading at QoS 1 on ``plant/press-7/temperature``, as a machine would.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from triggers import EventSource, trigger

machines = EventSource(
    name="plant_temperatures",
    url="mqtt://${MQTT_HOST:-127.0.0.1:1883}",  # read where the source runs
    topic="plant/+/temperature",
    event="machine_overheated",
    id="{subject}-{$.seq}",  # MQTT messages carry no id: this one survives a redelivery
    filters=["$.celsius > 80"],
)


@trigger(event="machine_overheated")
def cool_down(machine: str, celsius: float) -> None:
    print(f"cooling {machine} down from {celsius} °C")


async def publish_reading() -> None:
    import aiomqtt

    host, _, port = os.environ.get("MQTT_HOST", "127.0.0.1:1883").partition(":")
    reading = {"machine": "press-7", "celsius": 93.5, "seq": int(time.time() * 1000)}
    async with aiomqtt.Client(host, int(port or 1883)) as client:
        await client.publish("plant/press-7/temperature", json.dumps(reading), qos=1)
    print(f"published {reading} on plant/press-7/temperature")


if __name__ == "__main__":
    asyncio.run(publish_reading())
