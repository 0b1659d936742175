"""Takeover benchmark: how long a new owner takes to restore a partition's correlation
state, with 100,000 and with 1,000,000 events of history and the same live state.

One sensor waits for two events with a correlation key, within a 10-minute window of
event time. Each history event is the first event of a key of its own, so it is held
until its window passes; event times move on by a fixed step, chosen so that ``--live``
keys are held at the end whatever the history's length. The history goes straight into
a correlation stage, one partition, in batches of ``--batch`` offers, each batch closed
by a marks record that moves the watermark to its newest event; the stage writes its
changelog to the broker and saves snapshots in a SQLite run store, as a worker does.
Then its owner crashes (no snapshot at handover: the worst case), and a new owner takes
the partition over: from the latest snapshot plus the changelog after it, and, for
contrast, by replaying the whole changelog. Target: with snapshots, the takeover with
1M events of history within 1.2x of the one with 100k. What a takeover replays after the
snapshot is at most about the snapshot's size of changelog, depending on where the last
snapshot fell: the records read say how much (each takeover adds a fence to the
changelog, so each later round reads two records more).

    python bench/recovery.py [--history 100000,1000000] [--live 20000] [--batch 5000]
                             [--rounds 3] [--profile] [--bootstrap host:port]

Without --bootstrap (or TRIPWIRE_TEST_KAFKA) it starts the embedded broker (Tansu), which
cannot delete records: the changelog keeps its history, which the full replays read.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

# Run as `python bench/recovery.py`, this file's folder comes first on sys.path, and
# bench/sensors.py would shadow the `sensors` package: the repo root goes before it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from bench.common import kafka
from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.sensor import Sensor, build_sensors
from sensors.core.types import Arrival
from sensors.core.wire import encode_keyed, encode_marks
from sensors.runs.store import RunStore
from sensors.stages.correlation_stage import CorrelationStage, StateRecovery, mark_sources
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import ensure_topics, new_consumer, new_producer
from sensors.stages.snapshots import Snapshots
from triggers.envelope import Envelope
from triggers.params import ParamSpec
from triggers.settings import Settings
from triggers.spec import Entrypoint, EventDependency, FlowSpec, TriggerSpec

WINDOW = timedelta(minutes=10)
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the first event's time


def make_sensors() -> list[Sensor]:
    """One sensor: an order and its payment, matched by order number within ``WINDOW``."""
    flow = FlowSpec(
        name="paid",
        entrypoint=Entrypoint(function="f", module="bench"),
        parameters=(ParamSpec(name="order", type={"t": "int"}, required=False, default=0),),
        triggers=(
            TriggerSpec(
                name="trigger",
                dependencies=(
                    EventDependency(name="orders", dep="order"),
                    EventDependency(name="payments", dep="payment"),
                ),
                correlate_by={"order": "$.order", "payment": "$.order"},
                within=WINDOW,
            ),
        ),
    )
    return build_sensors([flow], project="bench", domain="bench", deployed_at=T0 - WINDOW)


def history_batches(
    sensors: list[Sensor], source: str, history: int, live: int, size: int, limit: int
) -> Iterator[list[bytes]]:
    """The offers records of ``history`` orders, ``size`` at a time, each batch ending with
    a marks record at its newest event time. Every order has a key of its own, and comes
    ``WINDOW / live`` after the one before: ``live`` keys are held once the history is in."""
    router = Router(sensors)
    step = WINDOW / live
    for first in range(0, history, size):
        arrivals = []
        for i in range(first, min(first + size, history)):
            at = T0 + i * step
            arrivals.append(Arrival(Envelope("orders", f"o{i}", "bench", at, {"order": i}), at))
        offers = router.route(arrivals).offers
        records = [record for _, record in encode_keyed(offers, 1, limit)]
        records.append(encode_marks({source: int(at.timestamp() * 1000)}))
        yield records


@dataclass
class Fed:
    """What feeding the history left: keys held, snapshots saved, changelog records
    written, and the stage's CPU per event (µs; snapshots included, making the records not)."""

    keys: int
    snapshots: int
    changelog: int
    cpu_per_event: float


@dataclass
class Takeover:
    """One new owner's restore: wall and CPU seconds, changelog records read, keys held."""

    wall: float
    cpu: float
    read: int
    keys: int


def new_stage(
    settings: Settings, store: RunStore, producer: AIOKafkaProducer, owner: str | None
) -> tuple[CorrelationStage, StateRecovery]:
    """A correlation stage of partition 0 and its recovery; with snapshots saved as
    ``owner``, or without snapshots (None)."""
    sensors = make_sensors()
    sources = mark_sources({settings.topic_events: 1})
    snapshots = Snapshots(settings, store, owner) if owner else None
    emitter = Emitter(settings, store, producer)
    stage = CorrelationStage(
        settings, Correlator(sensors), emitter, 1, sources, snapshots=snapshots
    )
    recovery = StateRecovery(settings, stage, lambda: new_consumer(settings, group_id=None))
    return stage, recovery


async def feed(
    settings: Settings,
    store: RunStore,
    producer: AIOKafkaProducer,
    history: int,
    live: int,
    size: int,
) -> Fed:
    """Feed ``history`` orders, ``size`` a batch, through a stage that restored partition 0
    (so that it holds a claim, under which its snapshots are saved), then let it crash."""
    stage, recovery = new_stage(settings, store, producer, "bench-owner")
    logs, _ = await recovery.replay({0})
    stage.logs.update(logs)
    [source] = stage.sources
    tp = TopicPartition(settings.topic_sensor_offers, 0)
    offset, cpu = 0, 0.0
    limit = settings.max_payload_bytes
    for values in history_batches(make_sensors(), source, history, live, size, limit):
        batch = {tp: [offers_record(tp, offset + n, value) for n, value in enumerate(values)]}
        offset += len(values)
        started = time.process_time()
        await (await stage.handle(batch))
        cpu += time.process_time() - started
    assert stage.snapshots is not None
    started = time.process_time()
    await stage.snapshots.close()  # the saves under way; then it crashes, no handover
    cpu += time.process_time() - started
    return Fed(len(stage.correlator.state), stage.snapshots.saved, logs[0].seq, cpu / history * 1e6)


def offers_record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    """An offers record as the stage's consumer gives it (the stage reads offset and value)."""
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 0, 0, None, value, None, 0, len(value), []
    )


async def take_over(
    settings: Settings, store: RunStore, producer: AIOKafkaProducer, snapshots: bool
) -> Takeover:
    """A new owner restores partition 0: from the latest snapshot, or by a full replay."""
    stage, recovery = new_stage(settings, store, producer, "bench-new-owner" if snapshots else None)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    _, read = await recovery.replay({0})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if stage.snapshots is not None:
        await stage.snapshots.close()
    return Takeover(wall, cpu, read, len(stage.correlator.state))


async def measure_history(
    args: argparse.Namespace, bootstrap: str, home: Path, history: int
) -> tuple[Fed, Takeover, Takeover]:
    """Feed ``history`` events on new topics and store; return the feed, and the best
    of ``--rounds`` takeovers with snapshots and without."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap=bootstrap,
        home=home / tag,
        topic_partitions=1,
        topic_events=f"bench-events-{tag}",
        topic_sensor_offers=f"bench-offers-{tag}",
        topic_sensor_state=f"bench-state-{tag}",
        topic_run_requests=f"bench-rr-{tag}",
    )
    changelog = {settings.topic_sensor_state: {"cleanup.policy": "delete", "retention.ms": "-1"}}
    await ensure_topics(settings, [settings.topic_sensor_state], changelog)
    async with await RunStore.open(settings.store_url) as store:
        producer = new_producer(settings)
        await producer.start()
        try:
            fed = await feed(settings, store, producer, history, args.live, args.batch)
            gc.collect()  # the crashed owner's state
            print(
                f"{history:,} events fed: {fed.keys:,} keys held, {fed.snapshots} snapshots "
                f"saved, {fed.changelog:,} changelog records, {fed.cpu_per_event:.1f} µs CPU "
                f"per event",
                flush=True,
            )
            best: dict[bool, Takeover] = {}
            for round_ in range(1, args.rounds + 1):
                for snapshots in (True, False):
                    took = await take_over(settings, store, producer, snapshots)
                    if snapshots not in best or took.wall < best[snapshots].wall:
                        best[snapshots] = took
                    print(
                        f"  round {round_}, {'snapshot' if snapshots else 'full replay'}: "
                        f"{took.wall:.3f}s wall, {took.cpu:.3f}s CPU, {took.read:,} records "
                        f"read, {took.keys:,} keys",
                        flush=True,
                    )
            if args.profile and history == max(args.histories):
                await profile_takeover(settings, store, producer)
            return fed, best[True], best[False]
        finally:
            await producer.stop()


async def profile_takeover(settings: Settings, store: RunStore, producer: AIOKafkaProducer) -> None:
    """Run one takeover with snapshots under cProfile and print where its time goes."""
    profiler = cProfile.Profile()
    profiler.enable()
    await take_over(settings, store, producer, True)
    profiler.disable()
    print("\nprofile of one takeover with snapshots (top 15 by cumulative time):")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)


async def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    try:
        with kafka(args.bootstrap) as bootstrap:
            broker = "given" if args.bootstrap or os.environ.get("TRIPWIRE_TEST_KAFKA") else "Tansu"
            print(
                f"broker {bootstrap} ({broker}), {os.cpu_count()} cpus, python "
                f"{sys.version.split()[0]}, one partition, {args.live:,} live keys, "
                f"batches of {args.batch:,}, best of {args.rounds} takeovers"
            )
            results = {h: await measure_history(args, bootstrap, home, h) for h in args.histories}
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"\n{'history':>10} {'live keys':>10} {'changelog':>10} | {'with snapshots':^32} | "
        f"{'full replay':^32}\n{'events':>10} {'':>10} {'records':>10} | "
        + " | ".join([f"{'read':>10} {'wall s':>10} {'CPU s':>10}"] * 2)
    )
    for history, (fed, snap, full) in results.items():
        print(
            f"{history:>10,} {fed.keys:>10,} {fed.changelog:>10,} | "
            + " | ".join(f"{t.read:>10,} {t.wall:>10.3f} {t.cpu:>10.3f}" for t in (snap, full))
        )
        if snap.keys != fed.keys or full.keys != fed.keys:
            print(
                f"  MISMATCH: keys after takeover {snap.keys:,} / {full.keys:,}, not {fed.keys:,}"
            )
    small, large = results[min(results)], results[max(results)]
    times = f"{max(results):,} vs {min(results):,} events of history"
    wall, cpu = large[1].wall / small[1].wall, large[1].cpu / small[1].cpu
    met = "met" if wall <= 1.2 else "MISSED"
    print(f"{times}, with snapshots: {wall:.2f}x wall, {cpu:.2f}x CPU (target <= 1.2x: {met})")
    wall, cpu = large[2].wall / small[2].wall, large[2].cpu / small[2].cpu
    print(f"{times}, full replay:    {wall:.2f}x wall, {cpu:.2f}x CPU")
    print(f"({os.cpu_count()} cpus; broker: {broker})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--history", default="100000,1000000", help="events of history")
    parser.add_argument("--live", type=int, default=20_000, help="keys held at the end")
    parser.add_argument("--batch", type=int, default=5_000, help="offers per batch")
    parser.add_argument("--rounds", type=int, default=3, help="report the best of N takeovers")
    parser.add_argument("--profile", action="store_true", help="profile a takeover at the end")
    parser.add_argument("--bootstrap")
    arguments = parser.parse_args()
    arguments.histories = [int(n) for n in arguments.history.split(",")]
    asyncio.run(main(arguments))
