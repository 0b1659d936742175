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
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError

from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.sensor import Sensor
from sensors.core.wire import key_partition
from sensors.egress import sink_for
from sensors.egress.stage import EgressStage
from sensors.launchers import by_url
from sensors.launchers.attempts import this_host, worker_name
from sensors.launchers.base import Launcher, family_of
from sensors.launchers.local import LocalLauncher
from sensors.runs import workers
from sensors.runs.deploy import deploy, deployed_sensors, deployment_mark
from sensors.runs.objects import ObjectStore
from sensors.runs.outages import log_failure, persistently
from sensors.runs.phases import WorkflowPhase
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.sources import SourceSupervisor
from sensors.sources.store import deploy_sources
from sensors.stages.correlation_stage import CorrelationStage, StateRecovery, mark_sources
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Handler, consume_batches, ensure_topics, new_consumer, new_producer
from sensors.stages.launch_stage import LaunchStage
from sensors.stages.lifecycle_relay import LifecycleRelay
from sensors.stages.reporter import StatusReporter
from sensors.stages.scheduler import Scheduler
from sensors.stages.sensor_stage import SensorStage
from sensors.stages.snapshots import Snapshots
from triggers import tracing
from triggers.errors import TripwireError
from triggers.settings import Settings
from triggers.sources import EventSource
from triggers.spec import FlowSpec

__all__ = ["Engine"]

_STOP_WAIT = 5.0  # seconds a stopping worker waits for its changelog records, to snapshot
# The changelog is written in per-batch deltas, which compaction would destroy.
_CHANGELOG_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1"}

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Stage(NamedTuple):
    """A stage that consumes topics, in a consumer group of its name."""

    name: str
    topics: tuple[str, ...]
    handle: Handler
    listener: ConsumerRebalanceListener | None = None
    tick: Callable[[], Awaitable[None]] | None = None
    ready: Callable[[TopicPartition], bool] | None = None
    """Whether a partition's records may be handled yet (its state is restored)."""


class _Joined(ConsumerRebalanceListener):
    """Notes that a consumer joined its group, whatever it was given: a worker beyond the
    partition count joins with none, and stands by. Passes the calls on to ``inner``."""

    def __init__(self, inner: ConsumerRebalanceListener | None) -> None:
        self.inner = inner
        self.joined = False
        self.partitions = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if self.inner is not None:
            await self.inner.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        # Joined before the inner listener runs: a restore can take long, and its
        # partitions wait for it (the stage's `ready`), not the worker's start.
        self.joined, self.partitions = True, len(assigned)
        if self.inner is not None:
            await self.inner.on_partitions_assigned(assigned)


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
        self._joined: list[_Joined] = []
        self._recovery: StateRecovery | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.relay: LifecycleRelay | None = None
        self.runs: RunService | None = None
        self.scheduler: Scheduler | None = None
        self.source_supervisor: SourceSupervisor | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._relay_stop = asyncio.Event()
        self._mark: tuple[Any, ...] = ()  # the deployment served (deployment_mark)

    async def start(self) -> None:
        """Connect to the store and the broker, deploy the sensors and start consuming."""
        tracing.enabled()  # decided now, not at the first event: the stages' spans need it
        # A worker started while its database is down (restarted during an outage, or
        # started before the database) waits for it, saying so once per try.
        waiting = "this worker is starting"
        try:
            self.store = await persistently(waiting, RunStore.open, self.settings.store_url)
            await persistently(waiting, self._beat, self.store, datetime.now(UTC))
            self._spawn(self._heartbeat(self.store), "tripwire heartbeat")
            await persistently(waiting, self._adopt)
            deployed = await persistently(waiting, self._deploy, self.store)
            # And so does one whose broker does not answer, at any step that talks to it:
            # the broker may go away between two of them (restarted meanwhile).
            await self._while_the_broker_is_down(self._make_topics)
            producer = await self._while_the_broker_is_down(
                self._start_producer, undo=self._stop_producer
            )
            self._start_relay(self.store, producer)
            store = self.store
            await self._while_the_broker_is_down(
                lambda: self._make_sensor_stages(store, producer, deployed)
            )
            await self._make_launch_stages(self.store, producer, deployed)
            _freeze_long_lived_objects()
            self._spawn(self._follow_deployments(), "tripwire deployments")
            await self._while_the_broker_is_down(self._start_consumers, undo=self._stop_consumers)
            self._start_scheduler()
            self._start_sources(self.store, producer)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "engine started: %d flows, %d sensors, broker %s, store %s",
            len(self.flows),
            len(deployed),
            self.settings.kafka_bootstrap,
            self.store.url,  # its password hidden
        )

    async def _deploy(self, store: RunStore) -> list[Sensor]:
        """Record the flows and sources given (``prune``: retire others); return the sensors."""
        s = self.settings
        if self.flows or self._prune:
            await deploy(store, self.flows, project=s.project, domain=s.domain, prune=self._prune)
        if self.sources or self._prune:
            await deploy_sources(
                store, self.sources, project=s.project, domain=s.domain, prune=self._prune
            )
        return await deployed_sensors(store, project=s.project, domain=s.domain)

    async def _make_topics(self) -> None:
        """Create the topics that are missing."""
        s = self.settings
        topics = [
            s.topic_events,
            s.topic_run_requests,
            s.topic_run_events,
            s.topic_sensor_offers,
            s.topic_sensor_state,
            s.topic_dead_letter,
        ]
        await ensure_topics(s, topics, configs={s.topic_sensor_state: _CHANGELOG_CONFIG})

    async def _while_the_broker_is_down(
        self,
        step: Callable[[], Awaitable[T]],
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``step()``, tried again with backoff while the broker does not answer (down,
        restarting, starting after the worker), one line per try; ``undo()`` first clears
        what a failed try left half made."""
        delay = 0.5
        while True:
            try:
                return await step()
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                log.warning(
                    "this worker is starting: the Kafka broker at %s does not answer (%s), "
                    "trying again in %.1fs; check that it is running and that "
                    "TRIPWIRE_KAFKA_BOOTSTRAP is right",
                    self.settings.kafka_bootstrap,
                    str(exc) or type(exc).__name__,
                    delay,
                )
            if undo is not None:
                await undo()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _start_producer(self) -> AIOKafkaProducer:
        # Kept before it starts, so that stop() closes it when starting fails.
        self._producer = new_producer(self.settings)
        await self._producer.start()
        return self._producer

    async def _stop_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _stop_consumers(self) -> None:
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._consumers = []

    def _start_relay(self, store: RunStore, producer: AIOKafkaProducer) -> None:
        """Publish the lifecycle events the store records, until stopped."""
        self.relay = LifecycleRelay(self.settings, store, producer)
        self._relay_task = asyncio.create_task(
            self.relay.run(self._relay_stop), name="tripwire lifecycle events"
        )

    async def _make_sensor_stages(
        self, store: RunStore, producer: AIOKafkaProducer, deployed: list[Sensor]
    ) -> None:
        """The stages that route events to sensors and correlate what they offer."""
        s = self.settings
        # Router and state must agree on the partitioning: use the topic's real count.
        partitions = len(await producer.partitions_for(s.topic_sensor_offers))
        emitter = Emitter(s, store, producer)
        self.sensor_stage = SensorStage(
            Router(deployed), emitter, partitions, StatusReporter(s, store)
        )
        inputs = (s.topic_events, s.topic_run_events)
        sources = mark_sources({t: len(await producer.partitions_for(t)) for t in inputs})
        self.correlation_stage = CorrelationStage(
            s,
            Correlator((d for d in deployed if d.stateful), partitions),
            emitter,
            partitions,
            sources,
            StatusReporter(s, store),
            Snapshots(s, store, worker_name()),
        )

    async def _make_launch_stages(
        self, store: RunStore, producer: AIOKafkaProducer, deployed: list[Sensor]
    ) -> None:
        """The stage that launches requested runs, and the scheduler of timed triggers."""
        s = self.settings
        self.runs = RunService(s, store, ObjectStore(s.objects_root), producer)
        self.launch_stage = LaunchStage(store, self.runs, self._launcher_for)
        event_partitions = len(await producer.partitions_for(s.topic_events))
        self.scheduler = Scheduler(
            s, store, self.runs, lambda sensor: self._owns(sensor, event_partitions), deployed
        )

    async def _start_consumers(self) -> None:
        """Join each consuming stage's group, then consume its topics until stopped."""
        s = self.settings
        stages = self._consuming_stages()
        group = f"tripwire.{s.project}.{s.domain}"
        self._joined = [_Joined(st.listener) for st in stages]
        self._consumers = [
            new_consumer(s, *st.topics, group_id=f"{group}.{st.name}", listener=joined)
            for st, joined in zip(stages, self._joined, strict=True)
        ]
        for consumer, st in zip(self._consumers, stages, strict=True):
            if isinstance(st.listener, StateRecovery):  # before the join assigns partitions
                st.listener.attach(consumer)
            if st.name == "sensors":
                assert self.sensor_stage is not None
                self.sensor_stage.attach(consumer)
        # start() returns after the group join, which Tansu holds for half the session
        # timeout: join all groups at once.
        await asyncio.gather(*(c.start() for c in self._consumers))
        for consumer, st in zip(self._consumers, stages, strict=True):
            work = consume_batches(
                consumer, st.handle, stop=self._stop, name=st.name, tick=st.tick, ready=st.ready
            )
            self._spawn(work, f"tripwire {st.name}")
        assert self.launch_stage is not None
        self.launch_stage.start()

    def _consuming_stages(self) -> list[_Stage]:
        """The sensor, correlator and launcher stages, and egress when it is enabled."""
        s = self.settings
        sensor, correlation, launch = self.sensor_stage, self.correlation_stage, self.launch_stage
        assert sensor is not None and correlation is not None and launch is not None
        recovery = StateRecovery(s, correlation, lambda: new_consumer(s, group_id=None))
        self._recovery = recovery
        stages = [
            _Stage(
                "sensors", (s.topic_events, s.topic_run_events), sensor.handle, tick=sensor.tick
            ),
            _Stage(
                "correlator",
                (s.topic_sensor_offers,),
                correlation.handle,
                listener=recovery,
                tick=correlation.tick,
                ready=correlation.ready,
            ),
            _Stage("launcher", (s.topic_run_requests,), launch.handle),
        ]
        if s.cloud_events.enable:
            self.egress = EgressStage(s.cloud_events, sink_for(s.cloud_events, s))
            stages.append(_Stage("egress", (s.topic_run_events,), self.egress.handle))
        return stages

    def _start_scheduler(self) -> None:
        assert self.scheduler is not None
        self._spawn(self.scheduler.run(self._stop), "tripwire scheduler")

    def _start_sources(self, store: RunStore, producer: AIOKafkaProducer) -> None:
        """Run the configured event sources, if any."""
        if self.settings.sources:
            self.source_supervisor = SourceSupervisor(self.settings, store, producer)
            self._spawn(self.source_supervisor.run(self._stop), "tripwire event sources")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as one of the tasks that stop() ends and run_forever() watches."""
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _follow_deployments(self) -> None:
        """Serve new, changed and retired flows as `tripwire deploy` records them."""
        s = self.settings
        assert self.store is not None
        self._mark = await deployment_mark(self.store, project=s.project, domain=s.domain)
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), s.deploy_poll_interval)
            if self._stop.is_set():
                return
            try:
                await self.follow_deployments()
            except Exception:
                log_failure(log, "reading the deployed flows failed; retrying")

    async def follow_deployments(self) -> None:
        """Serve what is deployed now, if a deploy changed it since the last look (one that
        just deployed need not wait for the next poll)."""
        s = self.settings
        assert self.store is not None
        latest = await deployment_mark(self.store, project=s.project, domain=s.domain)
        if latest != self._mark:
            self.serve(await deployed_sensors(self.store, project=s.project, domain=s.domain))
            self._mark = latest

    def code_changed(self) -> None:
        """The flows' code changed on disk (``tripwire dev``): local runs from now on start
        from it, warm starts too, though no flow's declarations changed."""
        for launcher in self._launchers.values():
            if isinstance(launcher, LocalLauncher):
                launcher.code_changed()

    async def _heartbeat(self, store: RunStore) -> None:
        """Write this worker's heartbeat every ``worker_heartbeat`` seconds; when another
        worker's stops, settle what it left (:mod:`sensors.runs.workers`).

        A worker judges others only once its own beats have gone through for as long as a
        silence that makes one gone: after an outage of the store every worker is silent,
        and the first one back must not take the others, which beat again, for gone."""
        started = datetime.now(UTC)
        every = self.settings.worker_heartbeat
        healthy = 0  # beats that went through in a row
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), every)
            if self._stop.is_set():
                return
            healthy = healthy + 1 if await self._beat(store, started) else 0
            if healthy <= workers.MISSED_BEATS:
                continue
            try:
                if await workers.mark_gone(store, every):
                    await self._adopt()
            except Exception:
                log_failure(log, "settling the runs of workers that stopped failed; retrying")

    async def _beat(self, store: RunStore, started: datetime) -> bool:
        """One heartbeat; whether it went through."""
        try:
            marked = await workers.beat(store, worker_name(), this_host(), started)
        except Exception:
            log_failure(log, "writing this worker's heartbeat failed; trying again")
            return False
        if marked is not None:
            log.error(
                "the other workers took this one for gone at %s: its heartbeats stopped for "
                "%d beats (a long pause, or the run store out of its reach). Runs it had "
                "claimed may have gone to them; the store refuses it any attempt of those",
                marked.isoformat(),
                workers.MISSED_BEATS,
            )
        return True

    def serve(self, deployed: list[Sensor]) -> None:
        """Route to ``deployed`` from the next batch on; keep the state of unchanged sensors."""
        assert self.sensor_stage is not None and self.correlation_stage is not None
        self.sensor_stage.router = Router(deployed)
        if self.scheduler is not None:
            self.scheduler.serve(deployed)
        reset = self.correlation_stage.correlator.update(d for d in deployed if d.stateful)
        _freeze_long_lived_objects()
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
        """Return once every stage joined its group and got its partitions, so published
        events will be read: by this worker, or by those that own them when there are more
        workers than partitions (this one then stands by, and says so).

        Raises:
            TripwireError: the consumer groups did not settle within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while not all(j.joined for j in self._joined):
            failed = [t for t in self._tasks if t.done()]
            if failed:
                failed[0].result()
            if time.monotonic() > deadline:
                raise TripwireError(
                    f"the engine's consumers got no partitions within {timeout:g}s from "
                    f"{self.settings.kafka_bootstrap}; check the broker and its logs."
                )
            await asyncio.sleep(0.05)
        idle = [c for c, j in zip(self._consumers, self._joined, strict=True) if not j.partitions]
        if idle:
            log.info(
                "%d of %d stages got no partitions: more workers than partitions share them "
                "(TRIPWIRE_TOPIC_PARTITIONS); this worker stands by for them",
                len(idle),
                len(self._consumers),
            )

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

    @staticmethod
    async def _hand_over(stage: CorrelationStage) -> None:
        """Snapshot the partitions a stopping worker owns, so that their next owner replays
        less; a failure only makes it replay more."""
        try:
            await stage.handover(wait=_STOP_WAIT)
            if stage.snapshots is not None:
                await stage.snapshots.close()
        except Exception:
            log.exception("snapshotting the correlation state at stop failed")

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
        if self.correlation_stage is not None:
            await self._hand_over(self.correlation_stage)
        if self.launch_stage is not None:
            await self.launch_stage.close()
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
        await self._stop_consumers()
        if self._recovery is not None:
            await self._recovery.close()
        await self._stop_producer()
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


def _freeze_long_lived_objects() -> None:
    """Take what lives as long as the worker (sensors, flows, the index) out of the
    collector's reach, or every collection that the hot path's short-lived objects
    trigger rescans it (bench/sensors.py: about 20% at 100k sensors)."""
    gc.collect()
    gc.freeze()
