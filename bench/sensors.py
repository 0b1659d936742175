"""Sensor-stage benchmark: events/s per worker at 10, 1,000 and 100,000 sensors.

Each sensor waits for two events (``s<i>.a`` and ``s<i>.b``, 1 h window); the
events come in pairs, so every second event fires a run. Each count runs twice:
with exact names only, and with a share of the sensors (``--wildcards``, default
10%) waiting for ``s<i>.a*`` instead, so that the wildcard trie is measured
against the exact index on the same events. One process runs the
sensor stage and the correlation stage against the broker, as a worker does
(run requests are produced, nothing is launched). Baselines, in the same run
and on the same topic: a raw aiokafka consumer, and a plain faust agent that
only iterates the topic.

    python bench/sensors.py [--events 100000] [--sensors 10,1000,100000] [--rounds 3]
                            [--wildcards 0.1] [--profile] [--bootstrap host:port]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/sensors.py`, this file's folder comes first on sys.path and this
# file would shadow the `sensors` package it measures.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()
]

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import fill, kafka
from sensors.core.changelog import PartitionLog
from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.sensor import Sensor, build_sensors
from sensors.core.types import Arrival, Offer
from sensors.runs.store import RunStore
from sensors.stages.correlation_stage import CorrelationStage, mark_sources
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import consume_batches, ensure_topics, new_consumer, new_producer
from sensors.stages.sensor_stage import SensorStage
from triggers.envelope import encode, make_envelope
from triggers.params import ParamSpec
from triggers.settings import Settings
from triggers.spec import Entrypoint, EventDependency, FlowSpec, TriggerSpec

HERE = Path(__file__).parent
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def make_sensors(count: int, wildcards: float = 0.0) -> list[Sensor]:
    """``count`` two-event sensors, built as data (no decorators: that is what workers get);
    a ``wildcards`` share of them wait for ``s<i>.a*`` rather than ``s<i>.a``."""
    every = round(1 / wildcards) if wildcards else 0
    params = (ParamSpec(name="n", type={"t": "int"}, required=False, default=0),)
    flows = [
        FlowSpec(
            name=f"s{i}",
            entrypoint=Entrypoint(function="f", module="bench"),
            parameters=params,
            triggers=(
                TriggerSpec(
                    name="trigger",
                    dependencies=(
                        EventDependency(
                            name=f"s{i}.a*" if every and i % every == 0 else f"s{i}.a", dep="a"
                        ),
                        EventDependency(name=f"s{i}.b", dep="b"),
                    ),
                    within=timedelta(hours=1),
                ),
            ),
        )
        for i in range(count)
    ]
    return build_sensors(flows, project="bench", domain="bench", deployed_at=LONG_AGO)


def events(
    count: int, sensors: int, traced: bool = False
) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """The events of a run; ``traced``: each carries a W3C trace context, as from a
    publisher inside a span."""
    records = []
    for j in range(count):
        pair = (j // 2) % sensors
        trace = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" if traced else None
        envelope, _ = make_envelope(
            f"s{pair}.{'ab'[j % 2]}", {"n": j, "label": "x" * 40}, traceparent=trace
        )
        record = encode(envelope)
        records.append((record.key, record.value, record.headers))
    return records


async def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_poll_records=5000,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen, started = 0, time.perf_counter()
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            seen += sum(len(r) for r in batch.values())
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def faust_loop(python: str, bootstrap: str, topic: str, count: int) -> tuple[float, float] | None:
    """The plain faust agent's rate and µs of CPU per event, run by ``python``: an
    interpreter with faust installed (`make bench` makes one; faust is not among
    tripwire's dependencies)."""
    done = subprocess.run(
        [python, str(HERE / "faust_loop.py"), bootstrap, topic, str(count)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in done.stdout.splitlines():
        if line.startswith("faust "):
            _, rate, cpu = line.split()
            return float(rate), float(cpu)
    print(f"faust baseline failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return None


async def tripwire_stage(
    settings: Settings, sensors: list[Sensor], count: int
) -> tuple[float, float]:
    """Drain ``count`` events through the sensor and correlation stages of one worker.

    Returns events/s and the process's CPU time per event (µs), from the first batch on.
    """
    tag = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "topic_sensor_offers": f"bench-offers-{tag}",
            "topic_sensor_state": f"bench-state-{tag}",
            "topic_run_requests": f"bench-rr-{tag}",
            "sensor_status_interval": 0.0,
            "topic_partitions": 1,
        }
    )
    await ensure_topics(s, [s.topic_sensor_offers, s.topic_sensor_state, s.topic_run_requests])
    async with await RunStore.open(s.store_url) as store:
        producer = new_producer(s, linger_ms=5, max_batch_size=1024 * 1024)
        await producer.start()
        emitter = Emitter(s, store, producer)
        router_stage = SensorStage(Router(sensors), emitter, 1)
        sources = mark_sources({s.topic_events: len(await producer.partitions_for(s.topic_events))})
        state_stage = CorrelationStage(s, Correlator(sensors), emitter, 1, sources)
        state_stage.logs[0] = PartitionLog(0, sources)  # restored: the topic is new
        gc.collect()
        gc.freeze()  # as sensors.engine does once its sensors are loaded
        events_in = new_consumer(s, s.topic_events, group_id=f"bench-sensors-{tag}")
        offers_in = new_consumer(s, s.topic_sensor_offers, group_id=f"bench-state-{tag}")
        await asyncio.gather(events_in.start(), offers_in.start())
        router_stage.attach(events_in)  # it writes marks, as in a worker
        stop = asyncio.Event()
        started: list[float] = []

        async def route(batch):  # type: ignore[no-untyped-def]
            if not started:
                started.extend((time.perf_counter(), time.process_time()))
            await router_stage.handle(batch)

        async def correlate(batch):  # type: ignore[no-untyped-def]
            await state_stage.handle(batch)
            if state_stage.offers >= count:
                stop.set()

        try:
            await asyncio.wait_for(
                asyncio.gather(
                    consume_batches(
                        events_in, route, stop=stop, name="sensors", tick=router_stage.tick
                    ),
                    consume_batches(offers_in, correlate, stop=stop, name="correlator"),
                ),
                timeout=900,
            )
            wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
            return count / wall, cpu / count * 1e6
        finally:
            await asyncio.gather(events_in.stop(), offers_in.stop())
            await producer.stop()


def memory_per_held_event(count: int = 100_000) -> float:
    """Bytes of correlation state per held event (tracemalloc, one event per sensor)."""
    sensors = make_sensors(count)
    correlator = Correlator(sensors)
    offers = []
    for i, sensor in enumerate(sensors):
        envelope, _ = make_envelope(f"s{i}.a", {"n": i, "label": "x" * 40})
        offers.append(Offer(sensor.id, "a", "", Arrival(envelope, envelope.time or LONG_AGO)))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    correlator.offer(offers, None)
    offers.clear()  # what remains is what the state keeps
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / correlator.held_count()


async def profile_stage(settings: Settings, sensors: list[Sensor], count: int) -> None:
    """Run the stage once under cProfile and print where its time goes."""
    profiler = cProfile.Profile()
    profiler.enable()
    await tripwire_stage(settings, sensors, count)
    profiler.disable()
    print(f"\nprofile of one run with {len(sensors):,} sensors (top 15 by own time):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


async def main(args: argparse.Namespace) -> None:
    with kafka(args.bootstrap) as bootstrap:
        await measure(args, bootstrap)


async def measure(args: argparse.Namespace, bootstrap: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="tripwire-bench-"))
    counts = [int(n) for n in args.sensors.split(",")]
    try:
        print(
            f"broker {bootstrap}, {os.cpu_count()} cpus, python {sys.version.split()[0]}, "
            f"{args.events:,} events per run, best of {args.rounds} rounds"
        )
        setups = []
        for count in counts:
            topic = f"bench-events-{uuid.uuid4().hex[:8]}"
            settings = Settings(
                kafka_bootstrap=bootstrap, home=home, topic_events=topic, topic_partitions=1
            )
            await ensure_topics(settings, [topic])
            await fill(bootstrap, topic, events(args.events, count))
            for share in (0.0, args.wildcards) if args.wildcards else (0.0,):
                setups.append((count, share, settings, make_sensors(count, share)))
        # Rounds interleave every measurement, so that a slow spell of a noisy machine
        # hits the baselines as much as tripwire; each figure is the best of its rounds.
        rates: dict[tuple[int, float], list[tuple[float, float]]] = {
            (c, w): [] for c, w, _, _ in setups
        }
        raws: list[float] = []
        fausts: list[tuple[float, float]] = []
        for round_ in range(1, args.rounds + 1):
            raws.append(await raw_consume(bootstrap, setups[0][2].topic_events, args.events))
            faust = faust_loop(args.faust_python, bootstrap, setups[0][2].topic_events, args.events)
            if faust is not None:
                fausts.append(faust)
            line = [
                f"round {round_}: raw {raws[-1]:,.0f}/s, faust {faust[0] if faust else 0:,.0f}/s"
            ]
            for count, share, settings, sensors in setups:
                rate, cpu = await tripwire_stage(settings, sensors, args.events)
                rates[(count, share)].append((rate, cpu))
                line.append(f"{count:,} sensors{_wild(share)} {rate:,.0f}/s")
            print(", ".join(line), flush=True)
        raw = max(raws)
        # The ratio that counts is CPU per event: the faust loop's rate varies 9-16k/s from
        # run to run on a shared machine, its CPU per event far less.
        faust_cpu = min((cpu for _, cpu in fausts), default=0.0)
        print(f"\nbaseline  raw aiokafka consumer      {raw:>9,.0f} events/s")
        print(
            f"baseline  plain faust agent loop     {max(fausts, default=(0.0, 0.0))[0]:>9,.0f} "
            f"events/s  ({faust_cpu:4.1f} µs CPU/event)"
        )
        first = max(rates[(counts[0], 0.0)])[0]
        for count, share, _, _ in setups:
            rate, cpu = max(rates[(count, share)])
            vs_faust = "faust n/a"
            if faust_cpu:
                vs_faust = f"{faust_cpu / cpu:4.1f}x less CPU/event than faust"
            exact = max(rates[(count, 0.0)])[0]
            vs_exact = f"; {exact / rate:.2f}x the time of exact names" if share else ""
            print(
                f"tripwire  {count:>7,} sensors{_wild(share):<16} {rate:>9,.0f} events/s  "
                f"({cpu:4.1f} µs CPU/event; {vs_faust}; {first / rate:.2f}x the time per "
                f"event of {counts[0]:,} sensors{vs_exact})"
            )
        print(f"memory per held event: {memory_per_held_event():,.0f} bytes")
        await tracing_figures(args, bootstrap, home, counts[0])
        if args.profile:
            await profile_stage(setups[0][2], setups[0][3], args.events)
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def tracing_figures(args: argparse.Namespace, bootstrap: str, home: Path, count: int) -> None:
    """CPU per event with tracing off and on, in the same run (docs/tracing.md): events
    without trace context, tracing off (the figures above); events that carry one,
    tracing off (they pass it on); and the same with spans recorded (route, correlate
    and fire, by the SDK, to an exporter that drops them), rounds interleaved."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from triggers import tracing

    class Dropped(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped(), max_queue_size=1 << 16))
    trace.set_tracer_provider(provider)
    tracing.enabled()  # a tracer provider is set up: spans on, until a case turns them off
    plain, carried = (f"bench-events-{uuid.uuid4().hex[:8]}" for _ in range(2))
    sensors = make_sensors(count)
    setups = {}
    for topic, traced in ((plain, False), (carried, True)):
        settings = Settings(
            kafka_bootstrap=bootstrap, home=home, topic_events=topic, topic_partitions=1
        )
        await ensure_topics(settings, [topic])
        await fill(bootstrap, topic, events(args.events, count, traced=traced))
        setups[traced] = settings
    cases = {
        "off, no trace context": (False, False),
        "off, trace context": (True, False),
        "on, spans recorded": (True, True),
    }
    cpu: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case, (traced, on) in cases.items():
            tracing.spans = on
            cpu[case].append((await tripwire_stage(setups[traced], sensors, args.events))[1])
    provider.shutdown()
    base = min(cpu["off, no trace context"])
    rounds = f"best of {args.rounds}"
    print(f"\ntracing, {count:,} sensors, {os.cpu_count()} cpus (µs CPU/event, {rounds}):")
    for case, figures in cpu.items():
        best = min(figures)
        print(f"  tracing {case:<24} {best:5.1f} µs  ({best - base:+5.1f} µs against no tracing)")


def _wild(share: float) -> str:
    return f" ({share:.0%} wildcard)" if share else ""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sensors", default="10,1000,100000")
    parser.add_argument("--rounds", type=int, default=3, help="report the best of N rounds")
    parser.add_argument(
        "--wildcards", type=float, default=0.1, help="share of wildcard sensors (0: none)"
    )
    parser.add_argument("--profile", action="store_true", help="profile one run at the end")
    parser.add_argument(
        "--faust-python",
        default=sys.executable,
        help="an interpreter with faust installed, for the faust baseline "
        "(pip install 'tripwire[faust]'; `make bench` makes .venv-faust)",
    )
    parser.add_argument("--bootstrap")
    asyncio.run(main(parser.parse_args()))
