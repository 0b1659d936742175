"""Snapshots of the correlation state, on the real broker and the run store: a new owner
loads the latest and replays only the changelog after it; a replaced owner's snapshot is
refused; a snapshot the changelog no longer backs is not loaded."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.wire import Snapshot, encode_keyed, encode_snapshot
from sensors.runs import snapshots as stored
from sensors.runs.store import RunStore
from sensors.stages.correlation_stage import CorrelationStage, StateRecovery, mark_sources
from sensors.stages.emitter import Emitter
from sensors.stages.kafka import Batch, ensure_topics, new_consumer, new_producer
from sensors.stages.snapshots import Snapshots
from tests.fixtures.chaos import s3_tansu
from tests.fixtures.core import arrival, sensors
from triggers import trigger
from triggers.settings import Settings

pytestmark = pytest.mark.integration


@trigger(events=["orders", "customers"], correlate_by="$.date", within="1h")
def daily(date: str = "") -> None: ...


DEPLOYED = sensors(daily, deployed_at=datetime.now(UTC) - timedelta(hours=1))


# the store: claims fence snapshots, on SQLite and PostgreSQL


async def test_a_new_claim_refuses_the_snapshots_of_the_owner_before_it(
    run_store: RunStore,
) -> None:
    # Given an owner that claimed changelog partition 3 and saved a snapshot
    first = (await stored.claim(run_store, "state", [3], "worker-a"))[3]
    assert first == stored.Claimed(1)
    assert await stored.save(run_store, "state", 3, first.claim, 10, b"a", 1)
    # When another worker claims it
    second = (await stored.claim(run_store, "state", [3], "worker-b"))[3]
    # Then it gets that snapshot, and the first owner can save no more
    assert (second.claim, second.changelog_offset, second.data) == (2, 10, b"a")
    assert not await stored.save(run_store, "state", 3, first.claim, 20, b"zombie", 1)
    # And its own snapshots are saved, but never one older than the one saved
    assert await stored.save(run_store, "state", 3, second.claim, 30, b"b", 2)
    assert not await stored.save(run_store, "state", 3, second.claim, 25, b"older", 2)
    third = (await stored.claim(run_store, "state", [3], "worker-c"))[3]
    assert (third.claim, third.changelog_offset, third.data, third.keys) == (3, 30, b"b", 2)
    # And other partitions are claimed apart
    assert ((await stored.claim(run_store, "state", [4], "worker-c"))[4]).claim == 1


# the stage, on the real broker


@pytest.fixture
async def settings(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Settings:
    return await _settings(kafka_bootstrap, unique_name, tmp_path)


async def _settings(bootstrap: str, name: str, home: Path) -> Settings:
    """The stage's settings on the broker at ``bootstrap``, one partition per topic."""
    s = Settings(
        kafka_bootstrap=bootstrap,
        home=home,
        topic_sensor_offers=f"{name}.sensor-offers",
        topic_sensor_state=f"{name}.sensor-state",
        topic_run_requests=f"{name}.run-requests",
        topic_partitions=1,
    )
    await ensure_topics(s, [s.topic_sensor_offers, s.topic_sensor_state, s.topic_run_requests])
    return s


@dataclass
class Parts:
    """What the owners of a test share: the run store, a producer, a reader of the offers
    topic from its beginning; and the owners' snapshots, closed at the end."""

    store: RunStore
    producer: Any
    offers: AIOKafkaConsumer
    snapshots: list[Snapshots] = field(default_factory=list)


@pytest.fixture
async def parts(settings: Settings) -> AsyncIterator[Parts]:
    async with _parts(settings) as together:
        yield together


@asynccontextmanager
async def _parts(settings: Settings) -> AsyncIterator[Parts]:
    async with await RunStore.open(settings.store_url) as store:
        producer = new_producer(settings)
        offers = new_consumer(settings, group_id=None)
        await producer.start()
        await offers.start()
        offers.assign([TopicPartition(settings.topic_sensor_offers, 0)])
        together = Parts(store, producer, offers)
        try:
            yield together
        finally:
            for snapshots in together.snapshots:
                await snapshots.close()
            await offers.stop()
            await producer.stop()


class Owner:
    """A worker's correlation stage for offers partition 0, with its snapshots."""

    def __init__(self, settings: Settings, parts: Parts, name: str) -> None:
        self.settings, self.offers = settings, parts.offers
        self.snapshots = Snapshots(settings, parts.store, name)
        parts.snapshots.append(self.snapshots)
        self.stage = CorrelationStage(
            settings,
            Correlator((s for s in DEPLOYED if s.stateful), 1),
            Emitter(settings, parts.store, parts.producer),
            1,
            mark_sources({settings.topic_events: 1}),
            snapshots=self.snapshots,
        )
        self.recovery = StateRecovery(
            settings, self.stage, lambda: new_consumer(settings, group_id=None)
        )

    async def take_over(self) -> int:
        """Restore and fence partition 0; return the changelog records read."""
        logs, read = await self.recovery.replay({0})
        self.stage.logs.update(logs)
        return read

    async def offer(self, *events: tuple[str, str, str]) -> None:
        """Write offers of (name, id, date) events and correlate them as one batch."""
        routed = Router(DEPLOYED).route(
            [arrival(name, id, at=datetime.now(UTC), date=date) for name, id, date in events]
        )
        for partition, record in encode_keyed(routed.offers, 1, self.settings.max_payload_bytes):
            await self.stage.emitter.producer.send_and_wait(
                self.settings.topic_sensor_offers, record, partition=partition
            )
        await (await self.stage.handle(await self._batch()))

    async def _batch(self) -> Batch:
        """The offers not read yet, up to the fetch's high watermark (see whole_topic)."""
        tp = TopicPartition(self.settings.topic_sensor_offers, 0)
        records: list[Any] = []
        while not records or await self.offers.position(tp) < (self.offers.highwater(tp) or 0):
            records += (await self.offers.getmany(tp, timeout_ms=1000)).get(tp, [])
        return {tp: records}

    def held(self) -> dict[str, list[str]]:
        return {k: sorted(deps) for k, deps in self.stage.correlator.held("daily.trigger").items()}


async def test_a_new_owner_loads_the_latest_snapshot_and_replays_only_what_follows_it(
    settings: Settings, parts: Parts
) -> None:
    # Given an owner that held orders of two dates and snapshotted that as it gave the
    # partition away
    first = Owner(settings, parts, "worker-a")
    await first.take_over()
    await first.offer(("orders", "o1", "d1"), ("orders", "o2", "d2"))
    await first.stage.handover()
    assert first.snapshots.saved == 1
    # and then, still its owner, correlated a batch that fired d1 and held an order of d3
    await first.offer(("customers", "c1", "d1"), ("orders", "o3", "d3"))
    # When another worker takes the partition over
    second = Owner(settings, parts, "worker-b")
    read = await second.take_over()
    # Then it read only the record of that batch and its own fence
    assert read == 2
    # And it holds what the first owner held
    assert second.held() == first.held() == {'"d2"': ["orders"], '"d3"': ["orders"]}
    assert second.stage.logs[0].offset == first.stage.logs[0].offset


async def test_snapshots_are_taken_as_the_interval_passes_and_saved_once_their_batch_landed(
    settings: Settings, parts: Parts
) -> None:
    # Given an owner whose snapshots are due after every batch but the first
    settings = settings.model_copy(update={"snapshot_interval": 1e-6})
    owner = Owner(settings, parts, "worker-a")
    await owner.take_over()
    await owner.offer(("orders", "o1", "d1"))
    await owner.offer(("orders", "o2", "d2"))
    # When its saves are done
    await owner.snapshots.close()
    # Then the second batch's snapshot is saved, covering the changelog to its end
    claimed = (await stored.claim(parts.store, settings.topic_sensor_state, [0], "reader"))[0]
    assert owner.snapshots.saved == 1
    assert claimed.keys == 2
    tp = TopicPartition(settings.topic_sensor_state, 0)
    assert claimed.changelog_offset == (await owner.offers.end_offsets([tp]))[tp]


async def test_a_replaced_owners_snapshot_is_refused_and_what_it_wrote_after_the_fence_ignored(
    settings: Settings, parts: Parts
) -> None:
    # Given an owner holding an order of d1, and a second worker that took the partition over
    first = Owner(settings, parts, "worker-a")
    await first.take_over()
    await first.offer(("orders", "o1", "d1"))
    second = Owner(settings, parts, "worker-b")
    await second.take_over()
    # When the first, not knowing it was replaced, correlates on and snapshots
    await first.offer(("orders", "o2", "d2"))
    await first.stage.handover()
    # Then its snapshot is refused
    assert first.snapshots.saved == 0
    # And a third owner holds only what the second one does: nothing of d2
    third = Owner(settings, parts, "worker-c")
    await third.take_over()
    assert third.held() == second.held() == {'"d1"': ["orders"]}


async def test_a_snapshot_past_what_the_changelog_holds_is_not_loaded_and_is_forgotten(
    settings: Settings, parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a snapshot saved for a changelog that the broker has since lost (a broker
    # without storage restarted, and the topic was made again)
    store = parts.store
    topic = settings.topic_sensor_state
    claimed = (await stored.claim(store, topic, [0], "worker-gone"))[0]
    lost = Snapshot(5, 9, 1000, {}, [])
    assert await stored.save(
        store, topic, 0, claimed.claim, 5000, zlib.compress(encode_snapshot(lost)), 0
    )
    first = Owner(settings, parts, "worker-a")
    # When a worker takes the partition over
    assert await first.take_over() == 1  # its fence
    # Then it says why it did not load the snapshot, and starts from what the changelog holds
    assert "the broker lost it" in caplog.text
    assert first.stage.logs[0].offset is None
    assert first.stage.logs[0].epoch == 1  # not the lost one's epoch 5, plus one
    # And the snapshot is gone, so that the new owner's own can be saved
    await first.offer(("orders", "o1", "d1"))
    await first.stage.handover()
    assert first.snapshots.saved == 1


async def test_a_snapshot_at_the_changelogs_end_is_loaded_though_the_broker_lists_the_end_short(
    moto_endpoint: str, unique_name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by the nemesis: Tansu keeping its data in S3 answers ListOffsets short of what
    # it acknowledged until the partition's next write, so a new owner judged a snapshot
    # at the changelog's end "past what the changelog holds", said the broker had lost
    # it, dropped it and replayed the whole changelog
    with s3_tansu(moto_endpoint, tmp_path / "tansu.log") as broker:
        settings = await _settings(broker.bootstrap, unique_name, tmp_path)
        async with _parts(settings) as parts:
            # Given owners that each correlate a batch and snapshot it as they hand over
            for n in range(5):
                owner = Owner(settings, parts, f"worker-{n}")
                # Then each next owner loads the snapshot and reads only its own fence
                assert await owner.take_over() == 1, caplog.text
                await owner.offer(("orders", f"o{n}", f"d{n}"))
                await owner.stage.handover()
                assert owner.snapshots.saved == 1
            assert "the broker lost it" not in caplog.text
            assert owner.held() == {f'"d{n}"': ["orders"] for n in range(5)}
