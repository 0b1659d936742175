"""Scale-out benchmark: one `tripwire worker` process, then two, sharing topics of 4 partitions.

Each cluster measured is its own: fresh topics of ``--partitions`` partitions on one broker,
a fresh PostgreSQL database (SQLite would have the writers of two processes contend for one
file's lock), and 1 or 2 `tripwire worker` processes. For 1 worker and for 2, and the ratio of
2 to 1, it prints:

  * events/s through the sensor stage, for events that match no flow;
  * events/s for events that each fire a flow: through the sensor stage, and on to QUEUED
    (admitted by the launch stage). The flow's ``rate_limit`` of 1/h keeps its runs QUEUED,
    so this measures routing, firing and admission, not launching;
  * runs/s through the launchers: a burst of events, each firing a flow that does nothing,
    until every run SUCCEEDED;
  * the CPU the workers took per 1,000 events and per run (their own, from /proc; their run
    processes' apart), and how busy the machine's CPUs were.

The events of each of these are in the topic before the workers read them: the workers are
paused (SIGSTOP) while it is filled, a second or two, well within their session timeout, and
timed from when they resume.

Then the rebalances. One worker takes a steady stream (``--rate`` events/s, each firing a run);
a second worker starts (it joins), and later gets SIGTERM (it leaves). For each moment (the
process's start, the signal), of the events published from a second before it: the largest
publish -> QUEUED latency, the longest pause between runs QUEUED from one partition's events,
and when the last event that waited over a second was QUEUED. The target is 10 s.

Baselines, in the same run and on the same broker: a raw aiokafka consumer reading the same
topic, for the sensor stage; and 1 worker, for 2. Rounds interleave 1 and 2 workers; each
figure is the best round's.

    python bench/scale.py [--events 100000] [--fires 20000] [--burst 1000] [--rounds 3]
                          [--rate 50] [--steady 10] [--observe 20] [--partitions 4]
                          [--postgres 127.0.0.1:5432] [--bootstrap host:port]

--rounds 0 measures the rebalances only. Without --bootstrap (or TRIPWIRE_TEST_KAFKA) it
starts the embedded broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as `python bench/scale.py`, this file's folder comes first on sys.path, and
# bench/sensors.py would shadow the `sensors` package: the repo root goes before it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

from bench.common import Records, fill, kafka
from bench.e2e import drain_raw, percentile
from sensors.runs.phases import TERMINAL_PHASES
from sensors.runs.store import RunStore
from sensors.runs.tables import runs
from tests.fixtures.kafka import topics_named
from triggers.envelope import encode, make_envelope

FLOWS = '''"""The flows bench/scale.py deploys."""

from triggers import trigger


@trigger(event="scale.run.*")
def scale_run(n: int = 0) -> None:
    """Does nothing: each event is one run."""


@trigger(event="scale.held.*", rate_limit="1/h")
def scale_held(n: int = 0) -> None:
    """Does nothing, and hardly ever: its runs wait in QUEUED."""
'''
TARGET = 10.0  # seconds: the most a rebalance may stop events (issue 24)
TICK = os.sysconf("SC_CLK_TCK")


def spread(prefix: str, partitions: int, per_partition: int = 2) -> list[tuple[str, int]]:
    """Event names under ``prefix`` that the producer's default partitioner (murmur2 of the
    key, the event name) spreads evenly, ``per_partition`` on each; with their partitions."""
    names: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for i in itertools.count():
        name = f"{prefix}{i}"
        names[(murmur2(name.encode()) & 0x7FFFFFFF) % partitions].append(name)
        if all(len(n) >= per_partition for n in names.values()):
            return [(n, p) for p, ns in names.items() for n in ns[:per_partition]]
    raise AssertionError("unreachable")


def events(names: list[tuple[str, int]], count: int) -> Records:
    records = []
    for n in range(count):
        record = encode(make_envelope(names[n % len(names)][0], {"n": n})[0])
        records.append((record.key, record.value, record.headers))
    return records


def cpu_of(pid: int) -> tuple[float, float]:
    """CPU seconds of process ``pid`` itself, and of its descendants, living or ended (and
    reaped into their parent's rusage), from /proc."""
    stats: dict[int, tuple[int, int, int]] = {}  # pid: parent, own, reaped children's
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # it ended meanwhile
                text = (entry / "stat").read_text()
                f = text[text.rindex(")") + 2 :].split()  # after the command's name
                stats[int(entry.name)] = (
                    int(f[1]),
                    int(f[11]) + int(f[12]),
                    int(f[13]) + int(f[14]),
                )
    children = defaultdict(list)
    for child, (parent, _, _) in stats.items():
        children[parent].append(child)
    _, own, below = stats[pid]
    stack = list(children[pid])
    while stack:
        child = stack.pop()
        below += stats[child][1] + stats[child][2]
        stack.extend(children[child])
    return own / TICK, below / TICK


def machine_busy() -> tuple[int, int]:
    """Jiffies of all the machine's CPUs since boot: busy, and in all."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return user + nice + system + irq + softirq + steal, sum(
        (user, nice, system, idle, iowait, irq, softirq, steal)
    )


@contextlib.asynccontextmanager
async def database(server: str, name: str) -> AsyncIterator[str]:
    """A fresh database on the PostgreSQL ``server`` (host:port, trust auth), dropped after."""
    host, _, port = server.rpartition(":")
    for user in ("root", "postgres"):  # a CI image's superuser, or a stock server's
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            admin = await asyncpg.connect(
                host=host, port=int(port), user=user, database="postgres", timeout=5
            )
            break
    else:
        raise SystemExit(f"PostgreSQL at {server} is unreachable as root or postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://{user}@{host}:{port}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 300, every: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(every)


@dataclass
class Drain:
    """One batch of events drained by a cluster, from the workers' resume."""

    count: int
    seconds: dict[str, float] = field(default_factory=dict)  # milestone: since the resume
    worker_cpu: float = 0.0  # the worker processes' own, to the last milestone
    run_cpu: float = 0.0  # their run processes' (and zygotes')
    busy: float = 0.0  # share of the machine's CPU time busy meanwhile

    def rate(self, milestone: str) -> float:
        return self.count / self.seconds[milestone]


@dataclass
class Cluster:
    """The workers of one measurement, their topics, and their store."""

    bootstrap: str
    name: str
    home: Path
    env: dict[str, str]
    store: RunStore
    admin: AIOKafkaAdminClient
    partitions: int
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    published: int = 0  # events in the events topic

    @property
    def topic(self) -> str:
        return self.env["TRIPWIRE_TOPIC_EVENTS"]

    def start(self) -> subprocess.Popen[bytes]:
        """Start one more `tripwire worker`, its output in its own log."""
        with (self.home / f"worker{len(self.workers)}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "sensors", "worker", str(self.home / "flows")],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(process)
        return process

    async def ready(self, process: subprocess.Popen[bytes]) -> None:
        log = self.home / f"worker{self.workers.index(process)}.log"

        async def said() -> bool:
            if process.poll() is not None:
                raise SystemExit(f"a worker exited:\n{log.read_text()[-3000:]}")
            return b"worker ready" in log.read_bytes()

        await until(said, "worker ready", timeout=120)

    def stop(self) -> None:
        for process in self.workers:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # in case it was paused
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def committed(self) -> int:
        """Events the sensor stage committed: read, handled, output landed."""
        group = f"tripwire.{self.name}.development.sensors"
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        offsets = await self.admin.list_consumer_group_offsets(group, partitions=tps)
        return sum(max(o.offset, 0) for o in offsets.values())

    async def routed(self) -> bool:
        """Whether the sensor stage committed every event published."""
        return await self.committed() >= self.published

    async def runs(self, *where: sa.ColumnElement[bool]) -> int:
        async with self.store.connection() as conn:
            query = sa.select(sa.func.count()).select_from(runs).where(*where)
            return int(await conn.scalar(query) or 0)

    async def drain(
        self, records: Records, milestones: dict[str, Callable[[], Awaitable[bool]]]
    ) -> Drain:
        """Fill the events topic with ``records`` while the workers are paused, resume them, and
        time each of ``milestones`` (in the order they are reached)."""
        for process in self.workers:
            process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        await fill(self.bootstrap, self.topic, records)
        if time.monotonic() - started > 4:
            print(f"  (filling took {time.monotonic() - started:.1f}s: the groups may rebalance)")
        self.published += len(records)
        before = [cpu_of(p.pid) for p in self.workers]
        busy = machine_busy()
        resumed = time.perf_counter()
        for process in self.workers:
            process.send_signal(signal.SIGCONT)
        drain = Drain(len(records))
        for milestone, reached in milestones.items():
            # Counting runs costs the database a scan: it is asked ten times less often.
            await until(reached, milestone, every=0.02 if milestone == "routed" else 0.2)
            drain.seconds[milestone] = time.perf_counter() - resumed
        after = [cpu_of(p.pid) for p in self.workers]
        drain.worker_cpu = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
        drain.run_cpu = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
        now = machine_busy()
        drain.busy = (now[0] - busy[0]) / max(now[1] - busy[1], 1)
        return drain


@contextlib.asynccontextmanager
async def cluster(args: argparse.Namespace, bootstrap: str, workers: int) -> AsyncIterator[Cluster]:
    """``workers`` workers on fresh topics and a fresh database, every one ready."""
    name = f"scale{uuid.uuid4().hex[:8]}"
    home = Path(tempfile.mkdtemp(prefix="tripwire-scale-"))
    (home / "flows").mkdir()
    (home / "flows" / "scale_flows.py").write_text(FLOWS)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async with database(args.postgres, name) as url, await RunStore.open(url) as store:
            env = {
                **os.environ,
                "TRIPWIRE_KAFKA_BOOTSTRAP": bootstrap,
                "TRIPWIRE_HOME": str(home),
                "TRIPWIRE_PROJECT": name,
                "TRIPWIRE_DATABASE_URL": url,
                "TRIPWIRE_TOPIC_PARTITIONS": str(args.partitions),
                "TRIPWIRE_SOURCES": "false",
                **topics_named(name),
            }
            running = Cluster(bootstrap, name, home, env, store, admin, args.partitions)
            try:
                for _ in range(workers):
                    running.start()
                for process in running.workers:
                    await running.ready(process)
                yield running
            finally:
                running.stop()
    finally:
        await admin.close()
        shutil.rmtree(home, ignore_errors=True)


async def one_round(
    args: argparse.Namespace, bootstrap: str, workers: int, raws: list[float]
) -> dict[str, Drain]:
    """Drain each kind of batch through one cluster of ``workers``. The held runs come last:
    QUEUED runs that may not start are looked at before any later one. With one worker, it
    also measures the raw consumer on the same topic, into ``raws``."""
    partitions = args.partitions
    async with cluster(args, bootstrap, workers) as c:
        measured = {}
        records = events(spread("noise.", partitions), args.events)
        measured["none"] = await c.drain(records, {"routed": c.routed})
        if workers == 1:
            raws.append(await drain_raw(bootstrap, c.topic, args.events))
        records = events(spread("scale.run.", partitions), args.burst)
        final = runs.c.phase.in_([p.value for p in TERMINAL_PHASES])
        measured["burst"] = await c.drain(
            records, {"succeeded": lambda: _at_least(c.runs(final), args.burst)}
        )
        records = events(spread("scale.held.", partitions), args.fires)
        measured["fires"] = await c.drain(
            records,
            {"routed": c.routed, "queued": lambda: _at_least(c.runs(), args.burst + args.fires)},
        )
        return measured


async def _at_least(count: Awaitable[int], target: int) -> bool:
    return await count >= target


async def stream(
    bootstrap: str, topic: str, names: list[tuple[str, int]], rate: float, stop: asyncio.Event
) -> dict[str, tuple[float, int]]:
    """Publish ``rate`` events a second, numbered, until ``stop``; return when each event (by
    id) was sent, and to which partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    sent: dict[str, tuple[float, int]] = {}
    landed = []
    try:
        began, n = time.time(), 0
        while not stop.is_set():
            while n < (time.time() - began) * rate:
                name, partition = names[n % len(names)]
                envelope, _ = make_envelope(name, {"n": n})
                record = encode(envelope)
                sent[envelope.id] = (time.time(), partition)
                landed.append(
                    await producer.send(topic, record.value, key=record.key, headers=record.headers)
                )
                n += 1
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*landed)
        return sent
    finally:
        await producer.stop()


def around(
    sent: dict[str, tuple[float, int]], queued: dict[str, float], start: float, end: float
) -> tuple[list[float], float, float]:
    """For the events sent from a second before ``start`` (those in flight then) to a second
    before ``end``: their publish -> QUEUED latencies (s), the longest pause between runs
    queued from one partition's events, and when (from ``start``) the last run whose event
    waited over a second was queued."""
    mine = [(t, p, queued[i]) for i, (t, p) in sent.items() if start - 1 <= t < end - 1]
    pause = 0.0
    for partition in {p for _, p, _ in mine}:
        times = sorted(q for _, p, q in mine if p == partition)
        pause = max([pause, *(b - a for a, b in itertools.pairwise(times))])
    slow = [q for t, _, q in mine if q - t > 1]
    return [q - t for t, _, q in mine], pause, max(slow, default=start) - start


async def rebalances(args: argparse.Namespace, bootstrap: str) -> None:
    """One worker under a steady stream; a second joins, then leaves (SIGTERM)."""
    cores = os.cpu_count()
    async with cluster(args, bootstrap, 1) as c:
        stop = asyncio.Event()
        names = spread("scale.run.", args.partitions)
        streaming = asyncio.create_task(stream(bootstrap, c.topic, names, args.rate, stop))
        began = time.time()
        await asyncio.sleep(args.steady)  # the timeline is paced: the stream goes on throughout
        joined = time.time()
        second = c.start()
        await c.ready(second)
        ready_after = time.time() - joined
        await asyncio.sleep(max(0.0, args.observe - ready_after))
        left = time.time()
        second.send_signal(signal.SIGTERM)
        await until(lambda: _exited(second), "the leaving worker to exit", timeout=60)
        exited_after = time.time() - left
        await asyncio.sleep(args.observe)
        stop.set()
        sent = await streaming
        ended = time.time()
        await until(lambda: _at_least(c.runs(), len(sent)), "a run for every event")
        async with c.store.connection() as conn:
            rows = await conn.execute(sa.select(runs.c.events, runs.c.created_at))
            queued = {r.events[0]["id"]: r.created_at.timestamp() for r in rows}
    print(
        f"\nrebalances: a steady {args.rate:g} events/s over {args.partitions} partitions, each "
        f"firing a run of a flow that does nothing; publish -> QUEUED ({cores} cores)"
    )
    for label, start, end in (
        ("1 worker, steady", began + 3, joined),
        ("2 workers, steady", left - 4, left),
    ):
        latencies, pause, _ = around(sent, queued, start, end)
        print(
            f"  {label:<34} p50 {percentile(latencies, 0.5) * 1000:6.0f} ms, "
            f"max {max(latencies) * 1000:6,.0f} ms; longest pause {pause:5.1f} s"
        )
    for label, start, end in (
        (f"join: 2nd started, ready in {ready_after:.1f} s", joined, left),
        (f"leave: 2nd SIGTERM, exited in {exited_after:.1f} s", left, ended),
    ):
        latencies, pause, recovered = around(sent, queued, start, end)
        print(
            f"  {label:<34} max latency {max(latencies):5.1f} s; longest pause {pause:5.1f} s "
            f"(target {TARGET:g} s: {'met' if max([*latencies, pause]) <= TARGET else 'MISSED'}); "
            f"under 1 s again after {recovered:.1f} s ({cores} cores)"
        )


async def _exited(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


STAGES = {
    "routed": "through the sensor stage",
    "queued": "to QUEUED (admitted by the launch stage)",
    "succeeded": "to SUCCEEDED (through the launchers)",
}


def report(args: argparse.Namespace, rounds: dict[int, list[dict[str, Drain]]], raw: float) -> None:
    """Each figure is that of the round with the best rate at the kind's last milestone."""
    cores = os.cpu_count()

    def line(label: str, one: float, two: float, unit: str, digits: int = 0) -> None:
        ratio = f"{two / one:.2f}x" if one and unit != "%" else ""
        print(f"  {label:<40}{one:>11,.{digits}f}{two:>11,.{digits}f}{ratio:>8}  {unit}")

    print(f"\n  {'':<40}{'1 worker':>11}{'2 workers':>11}{'2 vs 1':>8}  ({cores} cores)")
    print(f"baseline: a raw aiokafka consumer, one process ({cores} cores)")
    print(f"  {'reading the same topic':<40}{raw:>11,.0f}{'':>19}  events/s")
    for kind, title, milestones, count in (
        ("none", "events that match no flow", ("routed",), args.events),
        ("fires", "events that each fire a flow (runs held)", ("routed", "queued"), args.fires),
        ("burst", "a burst of runs, a flow that does nothing", ("succeeded",), args.burst),
    ):
        print(f"{title}: {count:,} ({cores} cores)")
        one, two = (
            max((r[kind] for r in rounds[n]), key=lambda d: d.rate(milestones[-1])) for n in (1, 2)
        )
        for milestone in milestones:
            unit = "runs/s" if milestone == "succeeded" else "events/s"
            line(STAGES[milestone], one.rate(milestone), two.rate(milestone), unit)
        # CPU s per 1,000 events is ms per event: one formula for both units.
        per = "ms per run" if kind == "burst" else "s per 1,000 events"
        cpu = (one.worker_cpu / count * 1000, two.worker_cpu / count * 1000)
        line("workers' own CPU", *cpu, per, 3)
        if kind == "burst":
            line(
                "their run processes' CPU",
                one.run_cpu / count * 1000,
                two.run_cpu / count * 1000,
                per,
                3,
            )
        line("machine CPU busy (all cores)", one.busy * 100, two.busy * 100, "%")


async def main(args: argparse.Namespace) -> None:
    with kafka(args.bootstrap) as bootstrap:
        await measure(args, bootstrap)


async def measure(args: argparse.Namespace, bootstrap: str) -> None:
    print(
        f"broker {bootstrap}, run store PostgreSQL at {args.postgres} (a fresh database per "
        f"cluster), {os.cpu_count()} cpus, python {sys.version.split()[0]}; topics of "
        f"{args.partitions} partitions; best of {args.rounds} rounds",
        flush=True,
    )
    rounds: dict[int, list[dict[str, Drain]]] = {1: [], 2: []}
    raws: list[float] = []
    for number in range(1, args.rounds + 1):
        # Rounds interleave 1 and 2 workers, so a slow spell of a noisy machine hits both.
        for workers in (1, 2):
            measured = await one_round(args, bootstrap, workers, raws)
            rounds[workers].append(measured)
            print(
                f"round {number}, {workers} worker{'s' if workers > 1 else ''}: "
                f"no match {measured['none'].rate('routed'):,.0f} events/s, "
                f"firing {measured['fires'].rate('routed'):,.0f} events/s "
                f"({measured['fires'].rate('queued'):,.0f}/s to QUEUED), "
                f"burst {measured['burst'].rate('succeeded'):,.1f} runs/s",
                flush=True,
            )
    if args.rounds:
        report(args, rounds, max(raws))
    await rebalances(args, bootstrap)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="events matching no flow")
    parser.add_argument("--fires", type=int, default=20_000, help="events firing held runs")
    parser.add_argument("--burst", type=int, default=1_000, help="events firing runs to the end")
    parser.add_argument("--rounds", type=int, default=3, help="report the best of N rounds")
    parser.add_argument("--rate", type=float, default=50, help="events/s of the steady stream")
    parser.add_argument("--steady", type=float, default=10, help="seconds before the join")
    parser.add_argument("--observe", type=float, default=20, help="seconds after each rebalance")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--postgres", default="127.0.0.1:5432", help="host:port, trust auth")
    parser.add_argument("--bootstrap")
    asyncio.run(main(parser.parse_args()))
