"""When a correlation stage snapshots a partition: once the changelog it wrote since the
last snapshot is as big as that snapshot (and the floor), or the interval passed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sensors.core.changelog import PartitionLog
from sensors.core.correlator import Correlator
from sensors.runs.store import RunStore
from sensors.stages.snapshots import FLOOR, Snapshots
from triggers.settings import Settings


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    async with await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}") as opened:
        yield opened


def written(partition_log: PartitionLog, size: int) -> PartitionLog:
    partition_log.unsaved += size
    return partition_log


async def test_a_partition_with_nothing_written_since_its_snapshot_is_never_due(
    store: RunStore,
) -> None:
    snapshots = Snapshots(Settings(snapshot_interval=1e-9), store, "w")
    assert not snapshots.due(PartitionLog(0, {"events:0"}))


async def test_a_snapshot_is_due_once_the_changelog_since_the_last_is_as_big_as_it(
    store: RunStore,
) -> None:
    snapshots = Snapshots(Settings(snapshot_interval=3600), store, "w")
    partition_log = PartitionLog(0, {"events:0"})
    # Below the floor, and before the interval: not due
    assert not snapshots.due(written(partition_log, FLOOR - 1))
    # At the floor: due; taking it starts the count again
    assert snapshots.due(written(partition_log, 1))
    snapshots.take([partition_log], Correlator())
    assert partition_log.unsaved == 0 and not snapshots.due(written(partition_log, FLOOR - 1))


async def test_a_snapshot_is_due_when_the_interval_passed_since_the_last(store: RunStore) -> None:
    snapshots = Snapshots(Settings(snapshot_interval=1e-9), store, "w")
    partition_log = written(PartitionLog(0, {"events:0"}), 10)
    # The first look starts the interval of a new owner; any later one is past it
    assert not snapshots.due(partition_log)
    assert snapshots.due(partition_log)
