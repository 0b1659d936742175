"""Soak: a `tripwire worker` under a steady stream for a long time. Memory must stay flat.

A real worker process (the one operators run) gets 1,000 sensors and a steady stream
of events (default 500/s for 20 minutes):

  * most events are the first half of a two-event sensor that never completes: they
    are held, then expire when their window (--within, default 30 s) passes, so the
    correlation state is exactly as large as the windows make it;
  * about one event a second (--run-rate) completes a pair, which launches a run.

Every --every seconds it samples the worker's RSS (from /proc), the lag of the
worker's sensor stage (records on the events topic it has not committed), the
runs that finished, and what was published. It prints each
sample, then RSS at the start (after warm-up), middle and end, runs per minute, and
draws a PNG (RSS, lag, runs per minute over time).

The baseline, measured in the same run on the same broker: raw aiokafka consume
throughput of the same kind of records, so that the steady rate reads as a share of
what the broker and client alone can do on this machine.

    python bench/soak.py [--minutes 20] [--rate 500] [--sensors 1000] [--plot soak.png]

Without --bootstrap (or TRIPWIRE_TEST_KAFKA) it starts the embedded broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/soak.py`, this file's folder comes first on sys.path, and
# bench/sensors.py would shadow the `sensors` package: the repo root goes there instead.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()
]

import argparse
import asyncio
import itertools
import os
import random
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.common import fill, kafka
from sensors.runs.store import RunStore
from sensors.runs.tables import runs
from triggers.envelope import encode, make_envelope

WARM_UP = 120.0  # seconds before the first RSS figure that counts: topics, caches, windows fill


@dataclass
class Sample:
    at: float  # seconds since the stream began
    rss_mb: float
    lag: int  # records published and not yet committed by the worker's stages
    published: int
    finished_runs: int


RUNNERS = 10  # sensors whose pairs complete; in a module of their own, so a run imports little


def flows_source(first: int, last: int, within: str) -> str:
    """Two-event sensors ``first`` to ``last - 1``; each run does nothing."""
    lines = ["from triggers import trigger\n"]
    for i in range(first, last):
        lines.append(
            f"@trigger(events=['soak{i}.a', 'soak{i}.b'], correlate_by='$.k', within='{within}')\n"
            f"def soak_{i}(k: str = '') -> None: ...\n"
        )
    return "\n".join(lines)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def lag(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition], published: list[int]
) -> int:
    """Records on the events topic (all of them this bench's, acknowledged) that the
    worker's sensor stage has not committed yet."""
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    done = sum(o.offset for o in committed.values() if o.offset > 0)
    return published[1] - done  # read after the commits: it counts every record they cover


async def raw_throughput(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes, list]]
) -> float:  # type: ignore[type-arg]
    """The baseline: produce ``records``, then consume them with a bare aiokafka consumer."""
    await fill(bootstrap, topic, records)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        seen, started = 0, time.perf_counter()
        while seen < len(records):
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(rs) for rs in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def record(name: str, key: str, n: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    envelope, _ = make_envelope(name, {"k": key, "n": n, "note": "x" * 60})
    kafka = encode(envelope)
    return kafka.key, kafka.value, kafka.headers


async def stream(
    bootstrap: str,
    topic: str,
    rate: float,
    run_rate: float,
    sensors: int,
    seconds: float,
    published: list[int],
) -> None:
    """Publish ``rate`` events a second for ``seconds``, in 100 ms ticks: first halves of
    pairs over all sensors, and ``run_rate`` a second of them completed by a second half."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=512 * 1024
    )
    await producer.start()
    rng = random.Random(7)
    tick, n, started = 0.1, 0, time.monotonic()
    complete_every = max(1, round(rate / run_rate))
    try:
        while time.monotonic() - started < seconds:
            due = int((time.monotonic() - started) * rate)
            pending = []
            while n < due:
                completes = n % complete_every == 0
                i = rng.randrange(RUNNERS) if completes else rng.randrange(sensors)
                key = uuid.uuid4().hex[:12]
                pending.append(await _send(producer, topic, record(f"soak{i}.a", key, n)))
                if completes:
                    pending.append(await _send(producer, topic, record(f"soak{i}.b", key, n)))
                n += 1
            if pending:
                await asyncio.gather(*pending)
            published[0], published[1] = n, published[1] + len(pending)
            await asyncio.sleep(tick)
    finally:
        await producer.stop()


async def _send(
    producer: AIOKafkaProducer, topic: str, item: tuple[bytes, bytes, list[tuple[str, bytes]]]
) -> asyncio.Future[object]:
    key, value, headers = item
    return await producer.send(topic, value, key=key, headers=headers)


async def finished_runs(store: RunStore) -> int:
    async with store.connection() as conn:
        query = sa.select(sa.func.count()).select_from(runs).where(runs.c.finished_at.is_not(None))
        return int(await conn.scalar(query) or 0)


def plot(samples: list[Sample], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.at / 60 for s in samples]
    per_minute = [0.0] + [
        (b.finished_runs - a.finished_runs) / max((b.at - a.at) / 60, 1e-9)
        for a, b in itertools.pairwise(samples)
    ]
    figure, (top, middle, bottom) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    top.plot(minutes, [s.rss_mb for s in samples], color="tab:blue")
    top.axvline(WARM_UP / 60, color="grey", linestyle=":", label="end of warm-up")
    top.set_ylabel("worker RSS (MB)")
    top.set_ylim(bottom=0)
    top.legend(loc="lower right")
    middle.plot(minutes, [s.lag for s in samples], color="tab:orange")
    middle.set_ylabel("consumer lag (records)")
    middle.set_ylim(bottom=0)
    bottom.plot(minutes, per_minute, color="tab:green")
    bottom.set_ylabel("runs finished / min")
    bottom.set_xlabel("minutes")
    bottom.set_ylim(bottom=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


async def main(args: argparse.Namespace) -> None:
    with kafka(args.bootstrap) as bootstrap:
        await soak(args, bootstrap)


async def soak(args: argparse.Namespace, bootstrap: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="tripwire-soak-"))
    name = f"soak{uuid.uuid4().hex[:8]}"
    (home / "flows").mkdir()
    (home / "flows" / "soak_runs.py").write_text(flows_source(0, RUNNERS, args.within))
    (home / "flows" / "soak_held.py").write_text(flows_source(RUNNERS, args.sensors, args.within))
    database = f"sqlite+aiosqlite:///{home / 'runs.db'}"
    env = {
        **os.environ,
        "TRIPWIRE_KAFKA_BOOTSTRAP": bootstrap,
        "TRIPWIRE_HOME": str(home),
        "TRIPWIRE_PROJECT": name,
        "TRIPWIRE_DATABASE_URL": database,
        "TRIPWIRE_TOPIC_EVENTS": f"{name}.events",
        "TRIPWIRE_TOPIC_RUN_REQUESTS": f"{name}.run-requests",
        "TRIPWIRE_TOPIC_RUN_EVENTS": f"{name}.run-events",
        "TRIPWIRE_TOPIC_SENSOR_OFFERS": f"{name}.sensor-offers",
        "TRIPWIRE_TOPIC_SENSOR_STATE": f"{name}.sensor-state",
        "TRIPWIRE_TOPIC_DEAD_LETTER": f"{name}.dead-letter",
    }
    group = f"tripwire.{name}.development.sensors"
    seconds = args.minutes * 60
    print(
        f"soak: {args.sensors:,} sensors, {args.rate:g} events/s (+{args.run_rate:g} completing "
        f"a pair, each a run), window {args.within}, {args.minutes:g} min; broker {bootstrap}, "
        f"{os.cpu_count()} cpus",
        flush=True,
    )
    baseline_topic = f"{name}.baseline"
    baseline = await raw_throughput(
        bootstrap,
        baseline_topic,
        [record(f"soak{i % args.sensors}.a", str(i), i) for i in range(50_000)],
    )
    print(f"baseline  raw aiokafka consumer: {baseline:,.0f} events/s on this broker", flush=True)
    log = (home / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "sensors", "worker", str(home / "flows")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    samples: list[Sample] = []
    try:
        while b"worker ready" not in (home / "worker.log").read_bytes():
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited:\n{(home / 'worker.log').read_text()[-3000:]}")
            await asyncio.sleep(0.5)
        print(f"worker ready (pid {worker.pid}), RSS {rss_mb(worker.pid):.0f} MB", flush=True)
        published = [0, 0]  # events, records (with the second halves) acknowledged
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        topic = env["TRIPWIRE_TOPIC_EVENTS"]
        described = await admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        store = await RunStore.open(database)
        producing = asyncio.create_task(
            stream(
                bootstrap,
                env["TRIPWIRE_TOPIC_EVENTS"],
                args.rate,
                args.run_rate,
                args.sensors,
                seconds,
                published,
            )
        )
        started = time.monotonic()
        print(f"{'min':>6} {'RSS MB':>8} {'lag':>8} {'published':>10} {'runs':>6}", flush=True)
        try:
            while not producing.done():
                await asyncio.sleep(
                    min(args.every, max(0.1, seconds - (time.monotonic() - started)))
                )
                if samples and time.monotonic() - started - samples[-1].at < 1:
                    continue  # the stream just ended: the last sample stands
                if worker.poll() is not None:
                    raise SystemExit(
                        f"the worker died:\n{(home / 'worker.log').read_text()[-3000:]}"
                    )
                sample = Sample(
                    at=time.monotonic() - started,
                    rss_mb=rss_mb(worker.pid),
                    lag=await lag(admin, group, partitions, published),
                    published=published[0],
                    finished_runs=await finished_runs(store),
                )
                samples.append(sample)
                print(
                    f"{sample.at / 60:6.1f} {sample.rss_mb:8.1f} {sample.lag:8,} "
                    f"{sample.published:10,} {sample.finished_runs:6,}",
                    flush=True,
                )
            await producing
        finally:
            await store.close()
            await admin.close()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()
    report(samples, args, baseline)
    plot(samples, args.plot, f"tripwire soak: {args.sensors:,} sensors, {args.rate:g} events/s")
    print(f"plot: {args.plot}")  # as given: results files cite nothing outside the repo


def report(samples: list[Sample], args: argparse.Namespace, baseline: float) -> None:
    warm = [s for s in samples if s.at >= WARM_UP] or samples
    start, middle, end = warm[0], warm[len(warm) // 2], warm[-1]
    minutes = (samples[-1].at - samples[0].at) / 60 if len(samples) > 1 else 1
    achieved = samples[-1].published / samples[-1].at if samples else 0
    rpm = (samples[-1].finished_runs - samples[0].finished_runs) / max(minutes, 1e-9)
    growth = end.rss_mb - start.rss_mb
    print()
    print(
        f"published      {samples[-1].published:,} events in {samples[-1].at / 60:.1f} min: "
        f"{achieved:,.0f}/s ({achieved / baseline:.1%} of the raw consumer's {baseline:,.0f}/s)"
    )
    print(
        f"RSS after warm-up ({WARM_UP:.0f}s): "
        f"start {start.rss_mb:.1f} MB at {start.at / 60:.1f} min, "
        f"middle {middle.rss_mb:.1f} MB at {middle.at / 60:.1f} min, "
        f"end {end.rss_mb:.1f} MB at {end.at / 60:.1f} min; "
        f"growth start->end {growth:+.1f} MB ({growth / start.rss_mb:+.1%})"
    )
    print(f"peak RSS       {max(s.rss_mb for s in samples):.1f} MB")
    mean_lag = sum(s.lag for s in warm) / len(warm)
    print(
        f"consumer lag   max {max(s.lag for s in warm):,}, mean {mean_lag:,.0f}, "
        f"end {end.lag:,} records"
    )
    print(f"runs           {samples[-1].finished_runs:,} finished, {rpm:.1f} per minute")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--run-rate", type=float, default=0.5, help="runs launched per second")
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument(
        "--within", default="30s", help="the sensors' window: held events expire after it"
    )
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--plot", type=Path, default=Path("soak.png"))
    parser.add_argument("--bootstrap")
    asyncio.run(main(parser.parse_args()))
