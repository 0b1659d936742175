"""Prometheus metrics of the API and of the engine behind it, at ``/metrics``.

The API counts what it receives and publishes, and times each publish. What the
workers do is read at scrape time from where it is kept, so any API process
serves it whatever worker did the work: filtered events and sensor fires from
the run store, runs by phase from the store, consumer lag from Kafka (each
engine consumer group's committed offsets against the end of its topics).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sensors.runs.store import RunStore
from sensors.runs.tables import filter_counts, runs
from triggers.kafka_client import connect
from triggers.settings import Settings

__all__ = ["Metrics"]

log = logging.getLogger(__name__)


class _Snapshot(Collector):
    """Metric families computed before a scrape (collectors themselves cannot await)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class Metrics:
    """The API's registry: its own counters, plus engine figures refreshed per scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.received = Counter(
            "tripwire_events_received",
            "Events the API received, by how they came (json, cloudevent, batch, webhook).",
            ["via"],
            registry=self.registry,
        )
        self.published = Counter(
            "tripwire_events_published",
            "Events the API published, once the broker acknowledged them.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "tripwire_events_rejected",
            "Publish requests refused, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "tripwire_publish_latency_seconds",
            "From a publish request's arrival to the broker's acknowledgement.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    async def render(self, settings: Settings, store: RunStore) -> bytes:
        """The text exposition, with the engine's figures read now."""
        families = await _store_families(store, settings)
        try:
            families.append(await _lag_family(settings))
        except Exception as exc:  # the broker is down: serve the rest, say so in the log
            log.warning("consumer lag unavailable: %s", exc)
        self._snapshot.families = families
        return generate_latest(self.registry)


async def _store_families(store: RunStore, settings: Settings) -> list[Metric]:
    scope = (settings.project, settings.domain)
    filtered = CounterMetricFamily(
        "tripwire_events_filtered",
        "Events a sensor's dependency filtered out (as the workers last reported).",
        labels=["sensor", "dependency"],
    )
    fires = CounterMetricFamily(
        "tripwire_sensor_fires", "Runs each sensor fired.", labels=["sensor"]
    )
    phases = GaugeMetricFamily("tripwire_runs", "Runs in each phase.", labels=["phase"])
    async with store.connection() as conn:
        rows = await conn.execute(
            sa.select(filter_counts.c.sensor_id, filter_counts.c.dep, filter_counts.c.count).where(
                filter_counts.c.project == scope[0], filter_counts.c.domain == scope[1]
            )
        )
        for sensor, dep, count in rows:
            filtered.add_metric([str(sensor), str(dep)], cast(float, count))
        by_sensor = sa.select(runs.c.sensor_id, sa.func.count()).where(
            runs.c.project == scope[0], runs.c.domain == scope[1], runs.c.sensor_id.is_not(None)
        )
        for sensor, count in await conn.execute(by_sensor.group_by(runs.c.sensor_id)):
            fires.add_metric([str(sensor)], cast(float, count))
        by_phase = sa.select(runs.c.phase, sa.func.count()).where(
            runs.c.project == scope[0], runs.c.domain == scope[1]
        )
        for phase, count in await conn.execute(by_phase.group_by(runs.c.phase)):
            phases.add_metric([str(phase)], cast(float, count))
    return [filtered, fires, phases]


async def _lag_family(settings: Settings) -> Metric:
    lag = GaugeMetricFamily(
        "tripwire_consumer_lag",
        "Records not yet consumed, per engine consumer group and topic.",
        labels=["group", "topic"],
    )
    s = settings
    group = f"tripwire.{s.project}.{s.domain}"
    stages = {
        "sensors": (s.topic_events, s.topic_run_events),
        "correlator": (s.topic_sensor_offers,),
        "launcher": (s.topic_run_requests,),
    }
    for stage, topics in stages.items():
        # A member that never subscribes reads the group's commits without joining it
        # (the admin client's OffsetFetch is not understood by every broker).
        connection = s.kafka_connection()
        reader = AIOKafkaConsumer(
            **connection,
            group_id=f"{group}.{stage}",
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        try:
            await connect(reader, connection)
            await reader.topics()  # fetches the metadata
            for topic in topics:
                partitions = [
                    TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()
                ]
                ends = await reader.end_offsets(partitions)
                behind = 0
                for tp in partitions:
                    committed = await reader.committed(tp) or 0
                    behind += max(0, ends.get(tp, 0) - committed)
                lag.add_metric([f"{group}.{stage}", topic], behind)
        finally:
            await reader.stop()
    return lag
