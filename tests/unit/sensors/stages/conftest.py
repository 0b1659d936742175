"""The stages without a broker: an in-memory Kafka (tests/fixtures/stub_kafka.py), a SQLite
run store in the test's folder, and the emitter the stages share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sensors.runs.store import RunStore
from sensors.stages import emitter as emitter_module
from sensors.stages.emitter import Emitter
from tests.fixtures.stub_kafka import StubKafka, StubProducer
from triggers.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, database_url=None, objects_url=None)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RunStore]:
    async with await RunStore.open(settings.store_url) as opened:
        yield opened


@pytest.fixture
def kafka() -> StubKafka:
    """Topics of four partitions, so that keying to partitions shows."""
    return StubKafka(partitions=4)


@pytest.fixture
def producer(kafka: StubKafka) -> StubProducer:
    """A producer whose sends wait until the test releases (or fails) them."""
    return kafka.producer(hold=True)


@pytest.fixture
def emitter(settings: Settings, store: RunStore, producer: StubProducer) -> Emitter:
    return Emitter(settings, store, producer)


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The emitter sends again at once after an error, not a second later."""
    monkeypatch.setattr(emitter_module, "_OUTPUT_RETRY", 0.0)
