"""The system under test: Tansu keeping its data in moto's S3, a PostgreSQL of its own, and
N `tripwire worker` processes on one host, deploying the nemesis flows."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from sensors.broker import EmbeddedBroker
from tests.fixtures.chaos import s3_tansu
from tests.fixtures.db import PrivatePostgres, started_postgres
from tests.fixtures.kafka import topics_named
from tests.fixtures.processes import ready, tripwire_process
from tests.fixtures.s3 import moto_process

FLOWS = Path(__file__).parent / "flows"
FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def skewable() -> bool:
    """Whether a worker's clock can be skewed here: Debian's libfaketime (apt install
    faketime), preloaded into that worker only. Its monotonic clock moves by the same
    constant, which changes no duration (libfaketime breaks ``time.sleep`` when told to
    leave the monotonic clock alone)."""
    return FAKETIME.exists()


_TASKS_LOGGED = "tasks, and where each waits"  # what a worker logs on SIGUSR1


@dataclass
class Worker:
    """One `tripwire worker` of the system, which the nemesis kills, restarts and pauses."""

    number: int
    env: dict[str, str]
    log: Path
    skew: float = 0.0
    process: subprocess.Popen[bytes] | None = None
    started: int = 0  # how many times it was started, so `ready` counts its lines
    crashes: list[int] = field(default_factory=list)  # exit codes of exits on its own
    _stack: ExitStack = field(default_factory=ExitStack)

    def start(self) -> None:
        env = dict(self.env)
        if self.skew:
            env |= {
                "LD_PRELOAD": str(FAKETIME),
                "FAKETIME": f"{self.skew:+.3f}",
            }
        self._stack = ExitStack()
        self.process = self._stack.enter_context(
            tripwire_process(["worker", str(FLOWS)], env, self.log)
        )
        self.started += 1

    async def ready(self) -> None:
        assert self.process is not None
        await ready(self.process, self.log, times=self.started)

    def kill(self) -> None:
        """SIGKILL, no goodbye; the process is reaped. If it had exited on its own, that
        is noted in ``crashes``."""
        assert self.process is not None
        if self.process.poll() is not None:
            self.crashes.append(self.process.returncode)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._stack.close()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def dump_tasks(self, timeout: float = 10.0) -> None:
        """Have the worker log where each of its tasks waits (SIGUSR1), and wait until it
        has: what a schedule that did not quiesce leaves to read in its log."""
        if self.process is None or self.process.poll() is not None:
            return
        before = self.log.read_text(errors="replace").count(_TASKS_LOGGED)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.read_text(errors="replace").count(_TASKS_LOGGED) > before:
                return
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s (see ``tripwire_process``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self._stack.close()

    def heal(self) -> None:
        """Start it again if it exited on its own, noting that in ``crashes``."""
        if self.process is not None and self.process.poll() is not None:
            self.crashes.append(self.process.returncode)
            self._stack.close()
            self.start()


class System:
    """The whole system for one schedule; use as ``async with System(...) as system``."""

    def __init__(self, folder: Path, name: str, workers: int, skews: dict[int, float]) -> None:
        self.folder = folder
        self.name = name
        self.ledger = folder / "ledger"
        self.workers: list[Worker] = []
        self._size = workers
        self._skews = skews
        self._stack = ExitStack()
        self.broker: EmbeddedBroker
        self.postgres: PrivatePostgres
        self.env: dict[str, str] = {}
        self._saved = dict(os.environ)  # this process takes the workers' settings for a while

    async def __aenter__(self) -> Self:
        self.ledger.mkdir(parents=True, exist_ok=True)
        try:
            moto = self._stack.enter_context(moto_process(self.folder / "moto.log"))
            self.broker = self._stack.enter_context(s3_tansu(moto, self.folder / "tansu.log"))
            self.postgres = self._stack.enter_context(started_postgres())
            self.env = self._environment()
            self.workers = [
                Worker(n, self.env, self.folder / f"worker-{n}.log", self._skews.get(n, 0.0))
                for n in range(self._size)
            ]
            for worker in self.workers:
                worker.start()
            await asyncio.gather(*(w.ready() for w in self.workers))
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()

    def close(self) -> None:
        self.stop_workers()
        self._stack.close()
        os.environ.clear()
        os.environ.update(self._saved)

    def _environment(self) -> dict[str, str]:
        """The workers' settings, which this process takes too (to publish and to wait)."""
        settings = {
            **topics_named(self.name),
            "TRIPWIRE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
            "TRIPWIRE_DATABASE_URL": self.postgres.url,
            "TRIPWIRE_HOME": str(self.folder / "home"),
            "TRIPWIRE_PROJECT": self.name,
            "TRIPWIRE_TOPIC_PARTITIONS": "1",  # Tansu on moto lists a partition per fetch: keep few
            # and fetch less often: at 100 ms, 6 consumers' fetches (each an S3 listing of a
            # partition's objects, hundreds of them) saturate moto, and every stage stalls
            "TRIPWIRE_KAFKA_FETCH_MAX_WAIT_MS": "1000",
            "TRIPWIRE_SYSTEM_RETRIES": "3",  # a run whose process the nemesis killed runs again
            "TRIPWIRE_SNAPSHOT_INTERVAL": "5",  # takeovers start from snapshots, too
            "NEMESIS_LEDGER": str(self.ledger),
        }
        os.environ.update(settings)
        return {**os.environ, **settings}
