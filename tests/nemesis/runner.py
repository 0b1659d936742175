"""One schedule from start to verdict: start the system, run the workload and the nemesis
together, heal, wait until the system has quiesced, then check what it holds against the
model. ``bench/nemesis.py`` runs many; ``tests/chaos/test_nemesis.py`` runs two."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from sensors.runs import history as runs_history
from sensors.runs.models import RunRecord
from sensors.runs.phases import TERMINAL_PHASES
from sensors.runs.store import RunStore
from tests.fixtures.kafka import whole_topic
from tests.fixtures.waits import caught_up
from tests.nemesis.checker import Observed, Report, check, missing_runs, read_ledger
from tests.nemesis.faults import MAX_SKEW, Nemesis, Schedule
from tests.nemesis.model import LANDING_SLACK, Event, Expected, expected_runs
from tests.nemesis.system import System
from tests.nemesis.workload import Workload
from triggers.envelope import decode
from triggers.settings import Settings

QUIESCE = 300.0  # seconds the system gets to settle once the faults are healed


@dataclass
class Result:
    """What one schedule did and found."""

    seed: int
    schedule: list[str]
    record: list[str] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    events: int = 0  # records on the events topic, duplicates included
    retried: int = 0  # publishes the broker refused and the workload retried
    report: Report = field(default_factory=Report)
    crashed: list[str] = field(default_factory=list)  # workers that exited on their own
    quiesced: str = ""  # what was still going when the system did not quiesce
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.report.passed and not self.crashed and not self.quiesced

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        out = [
            f"seed {self.seed}: {verdict} in {self.seconds:.0f}s; {self.events} events "
            f"({self.retried} publishes retried), faults "
            f"{', '.join(f'{k} {n}' for k, n in sorted(self.injected.items())) or 'none'}",
            *self.report.lines(),
        ]
        out += [f"  worker exited on its own: {c}" for c in self.crashed]
        out += [f"  did not quiesce in {QUIESCE:.0f}s: {self.quiesced}"] if self.quiesced else []
        if not self.passed:
            out += ["  schedule:", *self.schedule, "  what the nemesis did:"]
            out += [f"    {line}" for line in self.record]
            out += [f"  replay: python bench/nemesis.py --seed {self.seed}"]
        return out


async def run_schedule(
    seed: int,
    folder: Path,
    *,
    duration: float = 60.0,
    workers: int = 2,
    say: Callable[[str], None] = lambda _: None,
) -> Result:
    """Run schedule ``seed`` for ``duration`` seconds of workload on ``workers`` workers;
    logs and the ledger go under ``folder``; ``say`` hears how far it got."""
    began = time.monotonic()
    schedule = Schedule.generate(seed, duration, workers)
    workload = Workload.generate(seed, duration)
    result = Result(seed, schedule.lines())
    name = f"nm{seed}x{uuid.uuid4().hex[:6]}"
    async with System(folder, name, workers, schedule.skews) as system:
        nemesis = Nemesis(system, schedule)
        say(f"seed {seed}: the system is up after {time.monotonic() - began:.0f}s")
        # Begun a skew's worth later than now: the flows' deployment time came from a
        # worker's clock, and an event that arrived before it would not count.
        lead = MAX_SKEW + 1
        start, zero = datetime.now(UTC) + timedelta(seconds=lead), time.monotonic() + lead
        try:
            async with asyncio.TaskGroup() as both:
                publishing = both.create_task(workload.run(start, result.record))
                both.create_task(nemesis.run(zero))
            result.retried = publishing.result()
        except* Exception as failed:  # the nemesis could not inject or heal a fault
            result.crashed += [f"the nemesis failed: {e!r}" for e in failed.exceptions]
        until = datetime.now(UTC)
        for worker in system.workers:  # every worker runs again
            worker.heal()
            result.crashed += [f"worker {worker.number}, code {c}" for c in worker.crashes]
        result.record += sorted(nemesis.record)  # each line begins with its start time
        say(f"seed {seed}: workload and faults done after {time.monotonic() - began:.0f}s")
        result.injected = nemesis.injected
        bootstrap, settings = system.broker.bootstrap, Settings()
        events = [
            _event(record, workload.delays)
            for record in await whole_topic(bootstrap, settings.topic_events)
        ]
        expected = expected_runs(events, start, until)
        async with await RunStore.open(system.postgres.url) as store:
            result.quiesced = await _quiesce(store, expected, start, until, say)
            say(f"seed {seed}: quiesced after {time.monotonic() - began:.0f}s")
            if result.quiesced:  # where each worker's tasks wait, in its log
                await asyncio.gather(*(w.dump_tasks() for w in system.workers))
            # Stopped first: idle workers keep Tansu's S3 busy, and reading it is slow then.
            await asyncio.to_thread(system.stop_workers)
            observed = await _observe(store, bootstrap, system.ledger, start, until)
    result.events = len(events)
    result.report = check(expected, observed)
    result.seconds = time.monotonic() - began
    return result


def _in_range(run: RunRecord, start: datetime, until: datetime) -> bool:
    """Whether the model speaks of ``run``: a tick's run only inside the workload's time."""
    if run.flow != "nm_tick":
        return True
    return run.scheduled_at is not None and start < run.scheduled_at <= until


async def _quiesce(
    store: RunStore,
    expected: list[Expected],
    start: datetime,
    until: datetime,
    say: Callable[[str], None],
) -> str:
    """Wait until the system is quiet twice in a row, a look at the topics apart: every
    stage has handled everything, every run the model speaks of exists, has ended and had
    its phase changes published. Return what was still going if that took longer than
    ``QUIESCE``, else ''. (A run that must exist and never does is lost: it is only
    waited for until the deadline.)"""
    deadline = time.monotonic() + QUIESCE
    quiet, going, said = 0, "never looked", time.monotonic()
    while time.monotonic() < deadline:
        if time.monotonic() - said > 30:
            say(f"still settling: {going}")
            said = time.monotonic()
        try:
            await caught_up(timeout=max(1.0, deadline - time.monotonic()))
            runs = [r for r in await store.list_runs(limit=100_000) if _in_range(r, start, until)]
            names = {r.name for r in runs}
            unpublished = [
                c for c in await runs_history.unpublished_changes(store, 1000) if c.name in names
            ]
        except (Exception, pytest.fail.Exception) as error:  # caught_up fails as tests do
            going, quiet = f"{type(error).__name__}: {error}", 0
            await asyncio.sleep(2)
            continue
        unended = [f"{r.name} {r.phase}" for r in runs if r.phase not in TERMINAL_PHASES]
        missing = missing_runs(expected, runs)
        if not unended and not unpublished and not missing:
            quiet += 1
            if quiet == 2:
                return ""
        else:
            quiet = 0
            going = (
                f"runs not ended {unended[:5]}, unpublished changes {len(unpublished)}, "
                f"runs the model expects that do not exist yet {len(missing)} {missing[:3]}"
            )
        await asyncio.sleep(2)
    return going


async def _observe(
    store: RunStore, bootstrap: str, ledger: Path, start: datetime, until: datetime
) -> Observed:
    """What the store, the run-events topic and the ledger hold."""
    every = await store.list_runs(limit=100_000)
    runs = [r for r in every if _in_range(r, start, until)]
    changes = {run.name: await runs_history.history(store, *run.key) for run in every}
    lifecycle = await whole_topic(bootstrap, Settings().topic_run_events)
    published = [dict(r.headers)["ce_id"].decode() for r in lifecycle]
    return Observed(
        runs,
        [c for run in runs for c in changes[run.name]],
        published,
        read_ledger(ledger),
        {f"{c.project}.{c.domain}.phase-{c.id}" for cs in changes.values() for c in cs},
    )


def _event(record: ConsumerRecord[bytes, bytes], delays: dict[str, float]) -> Event:
    """An event of the events topic, with the broker's timestamp as its arrival, and
    whether its publish took so long that it may have landed after the grace."""
    envelope = decode(record.value, record.headers)
    arrived = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return Event(
        envelope.name,
        envelope.id,
        envelope.time or arrived,
        arrived,
        envelope.payload,
        record.partition,
        record.offset,
        landed_late=delays.get(envelope.id, 0.0) > LANDING_SLACK,
    )
