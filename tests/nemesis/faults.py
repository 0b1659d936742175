"""The nemesis: a seeded schedule of faults, and what injects them into a running system.

Faults start 2 to 6 s apart and may overlap (a worker paused while the broker is down,
both workers killed at once), but two faults of one component take turns:

- ``kill``: SIGKILL a worker, and start it again a few seconds later;
- ``pause``: SIGSTOP a worker for longer than its Kafka session timeout (6 s), so the
  others take its partitions, then SIGCONT: it comes back as a zombie owner;
- ``broker``: SIGKILL the broker and start it again (its data is in S3);
- ``postgres``: stop PostgreSQL at once, as a crash would, and start it again;
- ``runs``: SIGKILL the process groups of up to two running runs.

And, for the whole schedule, one worker's wall clock may be skewed (``skew``), by up to
``MAX_SKEW`` seconds either way: less than ``TRIPWIRE_ABSENCE_GRACE``, the lateness the
engine allows a clock (docs/reliability.md says what a larger skew does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.nemesis.system import System, skewable

KINDS = {"kill": 3, "pause": 2, "runs": 2, "broker": 1, "postgres": 1}
MAX_SKEW = 2.0


@dataclass(frozen=True)
class Fault:
    """``kind`` on worker ``target`` (where it applies) at ``at`` seconds, for ``lasts``."""

    at: float
    kind: str
    target: int
    lasts: float

    def __str__(self) -> str:
        where = f" worker {self.target}" if self.kind in ("kill", "pause") else ""
        return f"{self.at:6.1f}s {self.kind}{where} for {self.lasts:.1f}s"

    @property
    def component(self) -> str:
        """What the fault acts on: faults of one component take turns."""
        return f"worker {self.target}" if self.kind in ("kill", "pause") else self.kind


@dataclass
class Schedule:
    """A seeded fault schedule for ``workers`` workers over ``duration`` seconds."""

    seed: int
    faults: list[Fault]
    skews: dict[int, float]

    @classmethod
    def generate(cls, seed: int, duration: float, workers: int) -> Schedule:
        rng = random.Random(seed ^ 0x5EED)
        faults, at = [], rng.uniform(4, 8)
        while at < duration - 10:
            kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            lasts = {
                "kill": rng.uniform(1, 5),
                "pause": rng.uniform(8, 12),
                "runs": 0.0,
                "broker": rng.uniform(1, 4),
                "postgres": rng.uniform(2, 6),
            }[kind]
            faults.append(Fault(round(at, 1), kind, rng.randrange(workers), round(lasts, 1)))
            at += rng.uniform(2, 6)
        skews = {}
        if skewable() and rng.random() < 0.5:
            skews[rng.randrange(workers)] = round(rng.uniform(-MAX_SKEW, MAX_SKEW), 3)
        return cls(seed, faults, skews)

    def lines(self) -> list[str]:
        skew = [f"  clock of worker {w} skewed by {s:+.3f}s" for w, s in self.skews.items()]
        return skew + [f"  {fault}" for fault in self.faults]


@dataclass
class Nemesis:
    """Injects a schedule into a system, and records what it did and when."""

    system: System
    schedule: Schedule
    record: list[str] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)

    async def run(self, zero: float) -> None:
        """Inject each fault at its time (``zero`` is the workload's start, on
        ``time.monotonic``), heal it after it lasted, and return once all are healed."""
        turns: dict[str, asyncio.Lock] = {}
        async with asyncio.TaskGroup() as faults:
            for fault in self.schedule.faults:
                await asyncio.sleep(max(0.0, zero + fault.at - time.monotonic()))
                turn = turns.setdefault(fault.component, asyncio.Lock())
                faults.create_task(self._inject(fault, turn, zero))

    async def _inject(self, fault: Fault, turn: asyncio.Lock, zero: float) -> None:
        async with turn:
            began = time.monotonic() - zero
            detail = await getattr(self, f"_{fault.kind}")(fault)
        self.injected[fault.kind] += 1
        self.record.append(
            f"{began:6.1f}s-{time.monotonic() - zero:6.1f}s {fault.kind}"
            f"{f' worker {fault.target}' if fault.kind in ('kill', 'pause') else ''}"
            f"{f': {detail}' if detail else ''}"
        )

    async def _kill(self, fault: Fault) -> str:
        worker = self.system.workers[fault.target]
        worker.kill()
        await asyncio.sleep(fault.lasts)
        worker.start()
        return f"pid {worker.process.pid if worker.process else '?'} after"

    async def _pause(self, fault: Fault) -> str:
        worker = self.system.workers[fault.target]
        worker.pause()
        await asyncio.sleep(fault.lasts)
        worker.resume()
        return ""

    async def _broker(self, fault: Fault) -> str:
        broker = self.system.broker
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGKILL)
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(fault.lasts)
        await asyncio.to_thread(broker.start, timeout=30)
        return ""

    async def _postgres(self, fault: Fault) -> str:
        await asyncio.to_thread(self.system.postgres.stop)
        await asyncio.sleep(fault.lasts)
        await asyncio.to_thread(self.system.postgres.start)
        return ""

    async def _runs(self, fault: Fault) -> str:
        """Kill up to two running runs' process groups (none when the store is down)."""
        try:
            async with await RunStore.open(self.system.postgres.url, migrate=False) as store:
                running = await store.list_runs(phase=WorkflowPhase.RUNNING, limit=100)
        except Exception as error:  # the store may be down: that is another fault
            return f"none (the store did not answer: {type(error).__name__})"
        killed = []
        for run in [r for r in running if r.pid][:2]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid or 0, signal.SIGKILL)
                killed.append(run.name)
        return ", ".join(killed) or "none running"
