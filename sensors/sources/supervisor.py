"""Running the deployed event sources of a project and domain in this process.

The supervisor starts a :class:`SourceRunner` per deployed source, follows
``tripwire deploy`` (a changed source restarts, a retired one stops, a new one
starts) and writes what each runner reports to the run store every few seconds.
Every process may run every source: the buses that share out messages (JetStream
durables, RabbitMQ queues, Redis and Kafka groups, core NATS queue groups) share
them among the processes, and for the others (MQTT, LISTEN) a lease picks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer

from sensors.launchers.attempts import worker_name
from sensors.runs.store import RunStore
from sensors.sources.runner import SourceRunner
from sensors.sources.store import deployed_sources, report_status, sources_mark
from triggers.errors import StoreError
from triggers.settings import Settings

__all__ = ["SourceSupervisor"]

log = logging.getLogger(__name__)

_REPORT_EVERY = 2.0
_STOP_TIMEOUT = 10.0


class SourceSupervisor:
    """Runs the deployed sources until stopped; see the module docs."""

    def __init__(self, settings: Settings, store: RunStore, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.instance = worker_name()
        self.runners: dict[str, tuple[SourceRunner, asyncio.Event, asyncio.Task[None]]] = {}
        self._stopped: list[SourceRunner] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the deployed sources until ``stop`` is set, then stop them all."""
        s = self.settings
        mark: object = None
        try:
            while not stop.is_set():
                try:
                    latest = await sources_mark(self.store, project=s.project, domain=s.domain)
                    if latest != mark:
                        await self._serve()
                        mark = latest
                    await self._report()
                except StoreError as exc:
                    log.warning("event sources: the run store failed, trying again: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), min(_REPORT_EVERY, self.settings.deploy_poll_interval)
                    )
        finally:
            await self._stop_all(list(self.runners))
            with contextlib.suppress(StoreError, asyncio.CancelledError):
                await asyncio.wait_for(self._report(), 5)

    async def _serve(self) -> None:
        s = self.settings
        wanted = {
            spec.name: (spec, revision)
            for spec, revision in await deployed_sources(
                self.store, project=s.project, domain=s.domain
            )
        }
        outdated = [
            name
            for name, (runner, _, _) in self.runners.items()
            if name not in wanted or wanted[name][1] != runner.revision
        ]
        await self._stop_all(outdated)
        for name, (spec, revision) in wanted.items():
            if name in self.runners:
                continue
            runner = SourceRunner(
                spec,
                revision,
                settings=s,
                store=self.store,
                producer=self.producer,
                instance=self.instance,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop), name=f"tripwire source {name}")
            self.runners[name] = (runner, stop, task)
            log.info("event source %s (revision %d): %s", name, revision, spec.describe())

    async def _stop_all(self, names: list[str]) -> None:
        stopping = [self.runners.pop(name) for name in names if name in self.runners]
        for _, stop, _ in stopping:
            stop.set()
        tasks = [task for _, _, task in stopping]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_STOP_TIMEOUT)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for runner, _, task in stopping:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("event source %s failed", runner.spec.name, exc_info=task.exception())
            runner.stats.enter("stopped")
            self._stopped.append(runner)

    async def _report(self) -> None:
        reports = [runner.report() for runner, _, _ in self.runners.values()]
        reports += [runner.report() for runner in self._stopped]
        await report_status(self.store, self.settings.project, self.settings.domain, reports)
        self._stopped = []
