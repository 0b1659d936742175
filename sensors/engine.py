"""The engine: one worker's sensor stage and launcher stage, wired to Kafka and the store.

``tripwire worker`` and ``tripwire dev`` both run an :class:`Engine`. Several
workers share the work through Kafka consumer groups: the events topic's
partitions spread across the sensor stages, the run-requests topic's across
the launchers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.sensor import Sensor
from sensors.core.wire import key_partition
from sensors.egress import sink_for
from sensors.egress.stage import EgressStage
from sensors.launchers import by_url
from sensors.launchers.base import Launcher, family_of
from sensors.runs.deploy import deploy, deployed_sensors, deployment_mark
from sensors.runs.objects import ObjectStore
from sensors.runs.phases import WorkflowPhase
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.sources import SourceSupervisor
from sensors.sources.store import deploy_sources
from sensors.stages.correlation_stage import CorrelationStage, StateRecovery
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Handler, consume_batches, ensure_topics, new_consumer, new_producer
from sensors.stages.launch_stage import LaunchStage
from sensors.stages.lifecycle_relay import LifecycleRelay
from sensors.stages.reporter import StatusReporter
from sensors.stages.scheduler import Scheduler
from sensors.stages.sensor_stage import SensorStage
from triggers.errors import TripwireError
from triggers.settings import Settings
from triggers.sources import EventSource
from triggers.spec import FlowSpec

__all__ = ["Engine"]

# The changelog is written in per-batch deltas, which compaction would destroy.
_CHANGELOG_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}

log = logging.getLogger(__name__)


class Engine:
    """Runs the stages of one worker until stopped.

    Use as ``async with Engine(settings, flows) as engine: await engine.wait_ready()``.
    """

    def __init__(
        self,
        settings: Settings,
        flows: Sequence[FlowSpec] = (),
        *,
        sources: Sequence[EventSource] = (),
        prune: bool = False,
    ) -> None:
        self.settings = settings
        self.flows = list(flows)
        self.sources = list(sources)
        self._prune = prune
        self.store: RunStore | None = None
        self.sensor_stage: SensorStage | None = None
        self.launch_stage: LaunchStage | None = None
        self.correlation_stage: CorrelationStage | None = None
        self._launchers: dict[str, Launcher] = {}
        self.egress: EgressStage | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumers: list[AIOKafkaConsumer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.relay: LifecycleRelay | None = None
        self.runs: RunService | None = None
        self.scheduler: Scheduler | None = None
        self.source_supervisor: SourceSupervisor | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._relay_stop = asyncio.Event()

    async def start(self) -> None:
        """Connect to the store and the broker, deploy the sensors and start consuming."""
        s = self.settings
        try:
            self.store = await RunStore.open(s.store_url)
            await self._adopt()
            if self.flows:
                await deploy(
                    self.store, self.flows, project=s.project, domain=s.domain, prune=self._prune
                )
            if self.sources or self._prune:
                await deploy_sources(
                    self.store, self.sources, project=s.project, domain=s.domain, prune=self._prune
                )
            deployed = await deployed_sensors(self.store, project=s.project, domain=s.domain)
            await ensure_topics(
                s,
                [
                    s.topic_events,
                    s.topic_run_requests,
                    s.topic_run_events,
                    s.topic_sensor_offers,
                    s.topic_sensor_state,
                    s.topic_dead_letter,
                ],
                configs={s.topic_sensor_state: _CHANGELOG_CONFIG},
            )
            self._producer = new_producer(s)
            await self._producer.start()
            self.relay = LifecycleRelay(s, self.store, self._producer)
            self._relay_task = asyncio.create_task(
                self.relay.run(self._relay_stop), name="tripwire lifecycle events"
            )
            # Router and state must agree on the partitioning: use the topic's real count.
            partitions = len(await self._producer.partitions_for(s.topic_sensor_offers))
            emitter = Emitter(s, self.store, self._producer)
            self.sensor_stage = SensorStage(
                Router(deployed), emitter, partitions, StatusReporter(s, self.store)
            )
            self.correlation_stage = CorrelationStage(
                s,
                Correlator(d for d in deployed if d.stateful),
                emitter,
                partitions,
                StatusReporter(s, self.store),
            )
            self.runs = RunService(s, self.store, ObjectStore(s.objects_root), self._producer)
            self.launch_stage = LaunchStage(self.store, self.runs, self._launcher_for)
            event_partitions = len(await self._producer.partitions_for(s.topic_events))
            self.scheduler = Scheduler(
                s,
                self.store,
                self.runs,
                lambda sensor: self._owns(sensor, event_partitions),
                deployed,
            )
            # Sensors, flows and the index live as long as the worker: take them out of
            # the collector's reach, or every collection that the hot path's short-lived
            # objects trigger rescans them (bench/sensors.py: about 20% at 100k sensors).
            gc.collect()
            gc.freeze()
            recovery = StateRecovery(
                s, self.correlation_stage, lambda: new_consumer(s, group_id=None)
            )
            self._tasks.append(
                asyncio.create_task(self._follow_deployments(), name="tripwire deployments")
            )
            group = f"tripwire.{s.project}.{s.domain}"
            stages: list[tuple[str, tuple[str, ...], Handler, Any, Any]] = [
                (
                    "sensors",
                    (s.topic_events, s.topic_run_events),
                    self.sensor_stage.handle,
                    None,
                    self.sensor_stage.tick,
                ),
                (
                    "correlator",
                    (s.topic_sensor_offers,),
                    self.correlation_stage.handle,
                    recovery,
                    self.correlation_stage.tick,
                ),
                (
                    "launcher",
                    (s.topic_run_requests,),
                    self.launch_stage.handle,
                    None,
                    self.launch_stage.tick,
                ),
            ]
            if s.cloud_events.enable:
                self.egress = EgressStage(s.cloud_events, sink_for(s.cloud_events, s))
                stages.append(("egress", (s.topic_run_events,), self.egress.handle, None, None))
            self._consumers = [
                new_consumer(s, *topics, group_id=f"{group}.{name}", listener=listener)
                for name, topics, _, listener, _ in stages
            ]
            # start() returns after the group join, which Tansu holds for half the session
            # timeout: join all groups at once.
            await asyncio.gather(*(c.start() for c in self._consumers))
            for consumer, (name, _, handle, _, tick) in zip(self._consumers, stages, strict=True):
                self._tasks.append(
                    asyncio.create_task(
                        consume_batches(consumer, handle, stop=self._stop, name=name, tick=tick),
                        name=f"tripwire {name}",
                    )
                )
            self._tasks.append(
                asyncio.create_task(self.scheduler.run(self._stop), name="tripwire scheduler")
            )
            if s.sources:
                self.source_supervisor = SourceSupervisor(s, self.store, self._producer)
                self._tasks.append(
                    asyncio.create_task(
                        self.source_supervisor.run(self._stop), name="tripwire event sources"
                    )
                )
        except BaseException:
            await self.stop()
            raise
        log.info(
            "engine started: %d flows, %d sensors, broker %s, store %s",
            len(self.flows),
            len(deployed),
            s.kafka_bootstrap,
            self.store.url,  # its password hidden
        )

    async def _follow_deployments(self) -> None:
        """Serve new, changed and retired flows as `tripwire deploy` records them."""
        s = self.settings
        assert self.store is not None
        mark = await deployment_mark(self.store, project=s.project, domain=s.domain)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), s.deploy_poll_interval)
            if self._stop.is_set():
                return
            try:
                latest = await deployment_mark(self.store, project=s.project, domain=s.domain)
                if latest == mark:
                    continue
                self.serve(await deployed_sensors(self.store, project=s.project, domain=s.domain))
                mark = latest
            except Exception:
                log.exception("reading the deployed flows failed; retrying")

    def serve(self, deployed: list[Sensor]) -> None:
        """Route to ``deployed`` from the next batch on; keep the state of unchanged sensors."""
        assert self.sensor_stage is not None and self.correlation_stage is not None
        self.sensor_stage.router = Router(deployed)
        if self.scheduler is not None:
            self.scheduler.serve(deployed)
        reset = self.correlation_stage.correlator.update(d for d in deployed if d.stateful)
        gc.collect()
        gc.freeze()
        log.info(
            "now serving %d sensors (state of %d changed or retired ones dropped)",
            len(deployed),
            len(reset),
        )

    def _owns(self, sensor: Sensor, partitions: int) -> bool:
        """Whether this worker schedules ``sensor``: it owns the events partition the
        sensor's id hashes to, in the sensor stage's consumer group."""
        if not self._consumers:
            return False
        key = "\x1f".join([sensor.project, sensor.domain, sensor.id]).encode()
        owned = TopicPartition(self.settings.topic_events, key_partition(key, partitions))
        return owned in self._consumers[0].assignment()

    async def _adopt(self) -> None:
        """Take over the runs of workers that died: local ones of this host, and the Jobs
        and Workflows nobody watches (each launcher decides which are its to take)."""
        assert self.store is not None
        live = (WorkflowPhase.RUNNING, WorkflowPhase.ABORTING)
        targets = {"local://"} | {
            r.target for r in await self.store.list_runs(phase=live, limit=10_000)
        }
        for family, target in {family_of(t): t for t in sorted(targets)}.items():
            try:
                await self._launcher_for(target).adopt()
            except TripwireError as exc:
                log.error("cannot take over %s runs: %s", family, exc)

    def _launcher_for(self, target: str) -> Launcher:
        family = family_of(target)
        launcher = self._launchers.get(family)
        if launcher is None:
            assert self.store is not None
            launcher = self._launchers[family] = by_url(
                target, settings=self.settings, store=self.store
            )
        return launcher

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Return once every stage owns its partitions, so published events will be read.

        Raises:
            TripwireError: the consumer groups did not settle within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while not all(c.assignment() for c in self._consumers):
            failed = [t for t in self._tasks if t.done()]
            if failed:
                failed[0].result()
            if time.monotonic() > deadline:
                raise TripwireError(
                    f"the engine's consumers got no partitions within {timeout:g}s from "
                    f"{self.settings.kafka_bootstrap}; check the broker and its logs."
                )
            await asyncio.sleep(0.05)

    def request_stop(self) -> None:
        """Ask :meth:`run_forever` to return; safe from a signal handler."""
        self._stop.set()

    async def run_forever(self) -> None:
        """Wait until :meth:`stop` is called or a stage fails."""
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([stop, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            stop.cancel()

    async def stop(self) -> None:
        """Stop consuming, end local runs, and close every connection. Idempotent."""
        self._stop.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks = []
        for launcher in self._launchers.values():
            await launcher.close()
        self._launchers = {}
        if self.egress is not None:
            with contextlib.suppress(Exception):
                await self.egress.sink.close()
            self.egress = None
        if self._relay_task is not None:
            # After the launchers: the phases they recorded while closing go out too.
            self._relay_stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._relay_task, 5)
                assert self.relay is not None
                await asyncio.wait_for(self.relay.relay_once(), 5)
            self._relay_task = None
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._consumers = []
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
