"""Event sources' throughput: messages from a bus to acknowledged events on Kafka, per second.

For each bus whose server runs here (Redis Streams, NATS JetStream, RabbitMQ, and a
Kafka topic), the bus is filled with N JSON messages, then three figures are taken
in the same run, against the same servers:

- raw Kafka: aiokafka producing N events of the same size, in batches of 100 awaited
  one after the other (as a source does), acks=all;
- raw bus: the bus client reading and acknowledging N messages in batches of 100,
  with nothing published;
- source: a SourceRunner reading, converting, publishing, waiting for Kafka, then
  acknowledging.

A source does both on one event loop, and converts and encodes each message besides
(about 35 µs), so on one core it can at best reach "in series", the rate of doing the
two raw jobs one after the other; the last column says how close it comes.

    python bench/sources.py [--messages 20000] [--bus redis --bus nats] [--kafka HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer

from bench.common import kafka
from sensors.runs.store import RunStore
from sensors.sources.runner import SourceRunner
from sensors.stages.kafka import ensure_topics
from tests.fixtures.buses import Bus, bus
from triggers.envelope import encode, make_envelope
from triggers.settings import Settings

BUSES = ("redis", "nats", "rabbitmq", "kafka")
BATCH = 100


def body(n: int) -> dict[str, Any]:
    return {"order": f"o-{n}", "amount": n % 500, "region": "eu", "note": "x" * 100}


async def fill(chosen: Bus, count: int) -> None:
    """Put ``count`` messages on the bus, with its own producer client, in parallel."""
    if chosen.kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.from_url(chosen.url)
        async with client.pipeline(transaction=False) as pipe:
            for n in range(count):
                pipe.xadd(f"orders-{chosen.tag}", {"body": json.dumps(body(n))})
            await pipe.execute()
        await client.aclose()
    elif chosen.kind == "nats":
        import nats

        client = await nats.connect(chosen.url)
        js = client.jetstream()
        for start in range(0, count, 1000):
            await asyncio.gather(
                *(
                    js.publish(f"orders.{chosen.tag}.eu", json.dumps(body(n)).encode())
                    for n in range(start, min(count, start + 1000))
                )
            )
        await client.close()
    elif chosen.kind == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(chosen.url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(f"orders-{chosen.tag}", durable=True)
            for n in range(count):
                await channel.default_exchange.publish(
                    aio_pika.Message(json.dumps(body(n)).encode(), message_id=str(n)),
                    routing_key=f"orders-{chosen.tag}",
                )
    else:
        producer = AIOKafkaProducer(bootstrap_servers=chosen.url.removeprefix("kafka://"))
        await producer.start()
        futures = [
            await producer.send(f"orders-{chosen.tag}", json.dumps(body(n)).encode())
            for n in range(count)
        ]
        await asyncio.gather(*futures)
        await producer.stop()


async def raw_kafka(settings: Settings, count: int) -> float:
    """Seconds for aiokafka to publish ``count`` events in awaited batches of 100."""
    records = [
        encode(make_envelope("order_placed", body(n), source="tripwire://sources/bench")[0])
        for n in range(count)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.require_bootstrap(), acks="all")
    await producer.start()
    started = time.perf_counter()
    for start in range(0, count, BATCH):
        acks = [
            await producer.send(settings.topic_events, r.value, key=r.key, headers=r.headers)
            for r in records[start : start + BATCH]
        ]
        await asyncio.gather(*acks)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return elapsed


async def raw_bus(runner: SourceRunner, count: int) -> float:
    """Seconds for the bus client to receive and acknowledge ``count`` messages."""
    upstream = runner._upstream()
    await upstream.connect()
    started = time.perf_counter()
    seen = 0
    while seen < count:
        batch = await upstream.receive(BATCH, 5.0)
        if not batch:
            raise RuntimeError(f"the bus gave {seen} of {count} messages")
        await upstream.ack(batch)
        seen += len(batch)
    elapsed = time.perf_counter() - started
    await upstream.close()
    return elapsed


async def through_source(runner: SourceRunner, count: int) -> float:
    """Seconds for a source, once connected, to publish ``count`` events and acknowledge
    them (connecting, a consumer group join for Kafka, is not counted, as for raw bus)."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while runner.stats.state != "connected":
        await _alive(task, runner)
    started = time.perf_counter()
    while runner.stats.events_out < count:
        await _alive(task, runner)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return elapsed


async def _alive(task: asyncio.Task[None], runner: SourceRunner) -> None:
    if task.done():
        task.result()
        raise RuntimeError(f"the source stopped: {runner.stats.last_error}")
    await asyncio.sleep(0.001)


async def measure(kind: str, bootstrap: str, count: int, store: RunStore) -> tuple[float, ...]:
    tag = f"b{uuid.uuid4().hex[:8]}"
    chosen = bus(kind, tag, bootstrap)
    settings = Settings(
        kafka_bootstrap=bootstrap,
        project=tag,
        topic_events=f"{tag}.events",
        topic_dead_letter=f"{tag}.dead-letter",
    )
    await ensure_topics(settings, [settings.topic_events, settings.topic_dead_letter])
    await chosen.prepare()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:

        def runner(consumer: str | None) -> SourceRunner:
            # Each reads the bus from the start under a consumer of its own (a queue has one).
            extra: dict[str, Any] = {} if kind == "rabbitmq" else {"start": "all"}
            if consumer is not None and kind != "rabbitmq":
                extra["durable" if kind == "nats" else "group"] = consumer
            return SourceRunner(
                chosen.source(**extra),
                1,
                settings=settings,
                store=store,
                producer=producer,
                instance="bench",
            )

        kafka_seconds = await raw_kafka(settings, count)
        await fill(chosen, count)
        bus_seconds = await raw_bus(runner(f"{tag}-raw"), count)
        if kind == "rabbitmq":  # a queue gives each message once: fill it again
            await fill(chosen, count)
        source_seconds = await through_source(runner(None), count)
    finally:
        await producer.stop()
        await chosen.cleanup()
    return kafka_seconds, bus_seconds, source_seconds


async def main(args: argparse.Namespace) -> None:
    with kafka(args.kafka) as bootstrap, tempfile.TemporaryDirectory() as home:
        async with await RunStore.open(f"sqlite+aiosqlite:///{home}/store.db") as store:
            print(f"{args.messages:,} messages of ~170 bytes each, batches of {BATCH}; msgs/s")
            print(
                f"{'bus':<10}{'raw kafka':>11}{'raw bus':>11}{'in series':>11}"
                f"{'source':>11}{'of series':>11}"
            )
            for kind in args.bus or BUSES:
                probe = bus(kind, "probe", bootstrap)
                try:
                    probe.require()
                except BaseException as exc:  # pytest's skip outside pytest: the server is down
                    print(f"{kind:<10}skipped: {exc}")
                    continue
                k, b, s = await measure(kind, bootstrap, args.messages, store)
                raw_k, raw_b, series, source = (args.messages / x for x in (k, b, k + b, s))
                print(
                    f"{kind:<10}{raw_k:>11,.0f}{raw_b:>11,.0f}{series:>11,.0f}"
                    f"{source:>11,.0f}{source / series:>10.0%}"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--bus", action="append", choices=BUSES)
    parser.add_argument("--kafka", help="bootstrap of a Kafka to use (default: embedded)")
    asyncio.run(main(parser.parse_args()))
