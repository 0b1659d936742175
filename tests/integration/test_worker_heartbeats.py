"""Workers' heartbeats in the store (sensors/runs/workers.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sensors.runs import workers
from sensors.runs.store import RunStore
from sensors.runs.tables import workers as table

pytestmark = pytest.mark.integration

EVERY = 5.0  # seconds between beats: gone after six missed, 30 s


async def _silent_since(store: RunStore, name: str, ago: timedelta) -> None:
    async with store.connection(write=True) as conn:
        await conn.execute(
            table.update().where(table.c.name == name).values(heartbeat_at=datetime.now(UTC) - ago)
        )


async def test_a_silent_worker_is_marked_gone_once_and_a_beat_brings_it_back(
    run_store: RunStore,
) -> None:
    started = datetime.now(UTC)
    await workers.beat(run_store, "a:1:x", "a", started)
    await workers.beat(run_store, "b:2:y", "b", started)
    # A worker silent for less than six beats is not gone; one silent for longer is,
    # marked by the first live worker that looks, and only by that one
    await _silent_since(run_store, "a:1:x", timedelta(seconds=EVERY * 5))
    assert await workers.mark_gone(run_store, EVERY) == []
    await _silent_since(run_store, "a:1:x", timedelta(seconds=EVERY * 7))
    assert await workers.gone(run_store, ["a:1:x", "b:2:y"]) == {}  # not marked yet
    assert await workers.mark_gone(run_store, EVERY) == ["a:1:x"]
    assert await workers.mark_gone(run_store, EVERY) == []
    assert set(await workers.gone(run_store, ["a:1:x", "b:2:y", "c:3:z"])) == {"a:1:x"}
    # A worker that beats again is no longer gone
    await workers.beat(run_store, "a:1:x", "a", started)
    assert await workers.gone(run_store, ["a:1:x"]) == {}


async def test_workers_gone_for_a_week_are_forgotten(run_store: RunStore) -> None:
    await workers.beat(run_store, "old:1:x", "old", datetime.now(UTC))
    await _silent_since(run_store, "old:1:x", timedelta(days=8))
    assert await workers.mark_gone(run_store, EVERY) == ["old:1:x"]
    await workers.beat(run_store, "new:1:x", "new", datetime.now(UTC))
    await workers.mark_gone(run_store, EVERY)
    async with run_store.connection() as conn:
        names = [row.name for row in await conn.execute(table.select())]
    assert names == ["new:1:x"]
