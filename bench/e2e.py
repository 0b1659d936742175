"""End-to-end benchmark: publish -> run latency and sensor-stage throughput.

Prints, from one run on one broker:
  * raw aiokafka produce and consume throughput (the baseline);
  * sensor-stage throughput: decode + correlate + map + coerce + produce run requests;
  * for each TRIPWIRE_RUN_START mode (spawn, fork) in turn: publish -> QUEUED,
    -> RUNNING and -> SUCCEEDED latency, p50 and p99, at each of a few steady rates,
    each event firing a run of a flow that does nothing; then the time until a burst
    of events published at once all SUCCEEDED; runs/s; and the CPU the run processes
    took per run (the children's rusage: for a flow that does nothing, its start-up).

    python bench/e2e.py [--events 20000] [--runs 60] [--rates 1,10,50] [--burst 500]
                        [--bootstrap host:port]

Without --bootstrap (or TRIPWIRE_TEST_KAFKA) it starts the embedded broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/e2e.py`, this file's folder comes first on sys.path, and
# bench/sensors.py would shadow the `sensors` package.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()
]

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import kafka
from sensors.core.router import Router
from sensors.core.sensor import build_sensors
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.phases import TERMINAL_PHASES, WorkflowPhase
from sensors.runs.store import RunStore
from sensors.runs.tables import runs
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import consume_batches, new_consumer, new_producer
from sensors.stages.sensor_stage import SensorStage
from triggers.envelope import encode, make_envelope
from triggers.settings import Settings

FLOWS = Path(__file__).parent / "flows"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def fill(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list]]) -> float:
    """Produce records as fast as aiokafka allows; return messages per second."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for key, value, headers in records
        ]
        await asyncio.gather(*futures)
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def drain_raw(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_poll_records=5000,
    )
    await consumer.start()
    try:
        seen = 0
        batch = await consumer.getmany(timeout_ms=10000, max_records=5000)
        started = time.perf_counter()
        while True:
            seen += sum(len(r) for r in batch.values())
            if seen >= count:
                break
            batch = await consumer.getmany(timeout_ms=2000, max_records=5000)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def bench_events(count: int) -> list[tuple[bytes, bytes, list]]:
    records = []
    for n in range(count):
        envelope, _ = make_envelope("bench_tick", {"n": n, "label": "x" * 40, "extra": [1, 2, 3]})
        record = encode(envelope)
        records.append((record.key, record.value, record.headers))
    return records


async def sensor_throughput(settings: Settings, count: int) -> float:
    """Drain ``count`` pre-produced events through the sensor stage alone."""
    flows = discover_flows([FLOWS])
    sensors = build_sensors(
        flows, project="bench", domain="bench", deployed_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    stage_settings = settings.model_copy(update={"topic_run_requests": f"bench-rr-{uuid.uuid4()}"})
    async with await RunStore.open(settings.store_url) as store:
        producer = new_producer(stage_settings)
        await producer.start()
        consumer = new_consumer(
            stage_settings, settings.topic_events, group_id=f"bench-sensors-{uuid.uuid4()}"
        )
        await consumer.start()
        stage = SensorStage(Router(sensors), Emitter(stage_settings, store, producer), 1)
        stop = asyncio.Event()
        started: list[float] = []
        original = stage.handle

        async def timed(batch):  # type: ignore[no-untyped-def]
            if not started:
                started.append(time.perf_counter())
            await original(batch)
            if stage.stats.fires >= count:
                stop.set()

        try:
            await asyncio.wait_for(
                consume_batches(consumer, timed, stop=stop, name="bench"), timeout=300
            )
            return count / (time.perf_counter() - started[0])
        finally:
            await consumer.stop()
            await producer.stop()


@dataclass
class Phase:
    """What one publishing pattern measured, per run, in ms; and the children's CPU."""

    label: str
    queued: list[float] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    succeeded: list[float] = field(default_factory=list)
    wall: float = 0.0  # seconds from the first publish until every run finished

    def report(self) -> None:
        runs = len(self.succeeded)
        print(f"{self.label}: {runs} runs in {self.wall:.1f}s ({runs / self.wall:.1f} runs/s)")
        for name, values in (
            ("publish -> QUEUED", self.queued),
            ("publish -> RUNNING", self.running),
            ("publish -> SUCCEEDED", self.succeeded),
        ):
            if values:
                print(
                    f"  {name:<22} p50 {percentile(values, 0.5):7.0f} ms   "
                    f"p99 {percentile(values, 0.99):7.0f} ms   "
                    f"mean {statistics.fmean(values):7.0f} ms"
                )


async def finished(store: RunStore, since: datetime) -> int:
    """How many runs created since ``since`` are final: a count, not the runs."""
    query = sa.select(sa.func.count()).where(
        runs.c.created_at >= since, runs.c.phase.in_([p.value for p in TERMINAL_PHASES])
    )
    async with store.connection() as conn:
        return int(await conn.scalar(query) or 0)


async def run_phase(engine: Engine, label: str, count: int, rate: float | None) -> Phase:
    """Publish ``count`` events, each firing a run, at ``rate``/s (None: all at once);
    measure until every run finished."""
    from triggers.publish import publish

    assert engine.store is not None
    phase, sent = Phase(label), {}
    began = time.time()
    if rate is None:
        stamps = [time.time()] * count
        ids = await asyncio.gather(*(publish.aio("bench_tick", {"n": n}) for n in range(count)))
        sent = dict(zip(ids, stamps, strict=True))
    else:
        for n in range(count):
            started = time.time()
            sent[await publish.aio("bench_tick", {"n": n})] = started
            await asyncio.sleep(max(0.0, 1 / rate - (time.time() - started)))
    since = datetime.fromtimestamp(began, UTC)
    deadline = time.monotonic() + 300
    # A cheap poll, a count: this process is also the worker being measured.
    while await finished(engine.store, since) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    done = [
        r
        for r in await engine.store.list_runs(limit=100_000, since=since)
        if r.phase in TERMINAL_PHASES and r.events and r.events[0]["id"] in sent
    ]
    phase.wall = (
        max((r.finished_at.timestamp() for r in done if r.finished_at), default=began) - began
    )
    for run in done:
        t0 = sent[run.events[0]["id"]]
        if run.phase != WorkflowPhase.SUCCEEDED or run.finished_at is None:
            continue
        phase.queued.append((run.created_at.timestamp() - t0) * 1000)
        if run.started_at is not None:
            phase.running.append((run.started_at.timestamp() - t0) * 1000)
        phase.succeeded.append((run.finished_at.timestamp() - t0) * 1000)
    return phase


async def latency(settings: Settings, runs: int, rates: list[float], burst: int) -> None:
    """Publish at each of ``rates`` through one engine, then a burst; print each phase, and
    the CPU the run processes took, per run.

    That CPU is the children's rusage of this process over the engine's life: a run
    forked by a zygote is the zygote's child, counted once the zygote ends with the
    engine (with the zygote's own start, once). For a flow that does nothing it is the
    cost of starting a run.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = 0
    async with Engine(settings, discover_flows([FLOWS])) as engine:
        await engine.wait_ready()
        for rate in rates:
            phase = await run_phase(engine, f"{runs} events at {rate:g}/s", runs, rate)
            phase.report()
            total += len(phase.succeeded)
        if burst:
            phase = await run_phase(engine, f"a burst of {burst} events", burst, None)
            phase.report()
            total += len(phase.succeeded)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"run start-up: {cpu / max(total, 1) * 1000:.1f} ms of CPU per run ({total} runs)")


async def main(args: argparse.Namespace) -> None:
    with kafka(args.bootstrap) as bootstrap:
        await measure(args, bootstrap)


async def measure(args: argparse.Namespace, bootstrap: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    tag = uuid.uuid4().hex[:8]
    os.environ.update(
        {
            "TRIPWIRE_KAFKA_BOOTSTRAP": bootstrap,
            "TRIPWIRE_HOME": str(home),
            "TRIPWIRE_TOPIC_EVENTS": f"bench-events-{tag}",
            "TRIPWIRE_TOPIC_RUN_REQUESTS": f"bench-run-requests-{tag}",
            "TRIPWIRE_TOPIC_RUN_EVENTS": f"bench-run-events-{tag}",
            "TRIPWIRE_TOPIC_PARTITIONS": "1",
        }
    )
    os.environ.pop("TRIPWIRE_DATABASE_URL", None)
    settings = Settings()
    try:
        print(f"broker {bootstrap}, {os.cpu_count()} cpus, python {sys.version.split()[0]}")
        records = bench_events(args.events)
        produce_rate = await fill(bootstrap, settings.topic_events, records)
        consume_rate = await drain_raw(bootstrap, settings.topic_events, args.events)
        stage_rate = await sensor_throughput(settings, args.events)
        print(f"baseline  raw aiokafka produce        {produce_rate:>10,.0f} msg/s")
        print(f"baseline  raw aiokafka consume        {consume_rate:>10,.0f} msg/s")
        print(
            f"tripwire  sensor stage (single-event) {stage_rate:>10,.0f} events/s "
            f"({stage_rate / consume_rate:.0%} of raw consume; includes producing run requests)"
        )
        e2e = settings.model_copy(
            update={
                "topic_events": f"bench-lat-events-{tag}",
                "topic_run_requests": f"bench-lat-rr-{tag}",
            }
        )
        os.environ["TRIPWIRE_TOPIC_EVENTS"] = e2e.topic_events
        print(f"local runs: TRIPWIRE_MAX_PARALLEL_RUNS={e2e.max_parallel_runs}")
        rates = [float(r) for r in args.rates.split(",")]
        for mode in args.start.split(","):
            print(f"\nTRIPWIRE_RUN_START={mode}")
            tag = uuid.uuid4().hex[:8]
            topics = {
                "topic_events": f"bench-lat-events-{tag}",
                "topic_run_requests": f"bench-lat-rr-{tag}",
            }
            os.environ["TRIPWIRE_TOPIC_EVENTS"] = topics["topic_events"]
            await latency(
                e2e.model_copy(update={**topics, "run_start": mode}), args.runs, rates, args.burst
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--rates", default="1,10,50", help="events/s, one phase each")
    parser.add_argument("--burst", type=int, default=500, help="events published at once")
    parser.add_argument(
        "--start", default="spawn,fork", help="TRIPWIRE_RUN_START modes, measured in turn"
    )
    parser.add_argument("--bootstrap")
    asyncio.run(main(parser.parse_args()))
