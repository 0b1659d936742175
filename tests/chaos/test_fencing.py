"""Correlation owners crashed or paused at the seams of a batch and of a takeover: every run
still happens, once (issue 29)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from sensors.runs.store import RunStore
from tests.fixtures.chaos import CHAOS_FLOWS, Expected, runs_at_least
from tests.fixtures.processes import kill, pause_between_writes, ready, worker
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

RECOVERED = b"recovered correlation state of partitions"
"""What a worker logs once it restored (and fenced) partitions it was given."""


async def test_a_worker_killed_after_a_batchs_fires_landed_and_before_its_changelog(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    await _crash_in_a_batch_then_restart(chaos_env, tmp_path, "correlation.fires_landed")


async def test_a_worker_killed_after_a_batchs_changelog_landed_and_before_its_commit(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    await _crash_in_a_batch_then_restart(chaos_env, tmp_path, "correlation.changes_landed")


@pytest.mark.parametrize(
    ("point", "loaded"), [("snapshot.writing", False), ("snapshot.saved", True)]
)
async def test_a_worker_killed_while_it_saved_a_snapshot(
    chaos_env: dict[str, str], tmp_path: Path, point: str, loaded: bool
) -> None:
    # Snapshots due after every batch: the first one is written as the stream begins.
    env = {**chaos_env, "TRIPWIRE_SNAPSHOT_INTERVAL": "0.001"}
    second = await _crash_in_a_batch_then_restart(env, tmp_path, point)
    # (in the middle of its transaction, the snapshot is not saved; after it, the next
    # owner starts from it)
    assert (b"loaded a snapshot" in second.read_bytes()) is loaded


async def test_a_worker_killed_after_fencing_and_before_resuming_the_offers(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    expected = Expected()
    crashing = {**chaos_env, "TRIPWIRE_CRASH_AT": "correlation.fenced"}
    async with await RunStore.open(chaos_env["TRIPWIRE_DATABASE_URL"]) as store:
        with worker([CHAOS_FLOWS], chaos_env, tmp_path / "a.log") as a:
            await ready(a, tmp_path / "a.log")
            # Given a worker that has correlated part of a stream, pairs among it
            stream = asyncio.create_task(expected.stream(ticks=40, pairs=8))
            await eventually(lambda: runs_at_least(store, 5), "the first runs", timeout=60)
            kill(a)
        # When the worker that takes its partitions over dies once it fenced them
        with worker([CHAOS_FLOWS], crashing, tmp_path / "b.log") as b:
            await _killed_itself(b, tmp_path / "b.log")
        await stream
        # Then the next owner, reading past that fence, makes each run exactly once
        with worker([CHAOS_FLOWS], chaos_env, tmp_path / "c.log") as c:
            await ready(c, tmp_path / "c.log")
            await expected.exactly_once(store)


async def test_a_worker_paused_past_its_session_timeout_comes_back_as_a_fenced_zombie(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    session = Settings().kafka_session_timeout
    # The pause is the fault: past the session timeout, plus the half of it that Tansu
    # holds a JoinGroup for, plus a second for the rebalance itself.
    hold = session * 1.5 + 1.0
    a_log, b_log, expected = tmp_path / "a.log", tmp_path / "b.log", Expected()
    async with await RunStore.open(chaos_env["TRIPWIRE_DATABASE_URL"]) as store:
        with (
            worker([CHAOS_FLOWS], chaos_env, a_log) as a,
            worker([CHAOS_FLOWS], chaos_env, b_log) as b,
        ):
            await ready(a, a_log)
            await ready(b, b_log)
            await eventually(lambda: RECOVERED in b_log.read_bytes(), "B's partitions", timeout=60)
            # Given two workers sharing a stream
            done = asyncio.Event()
            stream = asyncio.create_task(_stream_until(expected, done))
            await eventually(lambda: runs_at_least(store, 5), "the first runs", timeout=60)
            a_restores, b_restores = (log.read_bytes().count(RECOVERED) for log in (a_log, b_log))
            # When one of them is paused past its session timeout, mid-stream and just
            # after a burst of pairs, so that it likely holds work in flight
            for n in range(4):
                await expected.pair(f"zombie{n}-{uuid.uuid4().hex[:6]}")
            # (between two of its writes: stopped inside one, it would hold SQLite's one
            # write lock, and no one could take over from it until it ran again)
            await pause_between_writes(a, _database(chaos_env))
            paused = time.monotonic()
            try:
                # (the other one takes its partitions over, fencing them)
                await eventually(
                    lambda: b_log.read_bytes().count(RECOVERED) > b_restores,
                    "the other worker to restore the paused one's partitions",
                    timeout=session * 3 + 30,
                )
                await asyncio.sleep(max(0.0, hold - (time.monotonic() - paused)))
            finally:
                a.send_signal(signal.SIGCONT)
            # and comes back with what it had in flight, rejoins, and owns partitions again
            await eventually(
                lambda: a_log.read_bytes().count(RECOVERED) > a_restores,
                "the paused worker to rejoin and restore partitions",
                timeout=session * 3 + 30,
            )
            done.set()
            await stream
            # Then what the zombie wrote after the fence counts for nothing, and each run
            # happens exactly once
            await expected.exactly_once(store)
            assert a.poll() is None, a_log.read_text()[-4000:]
            assert b.poll() is None, b_log.read_text()[-4000:]


async def _crash_in_a_batch_then_restart(
    chaos_env: dict[str, str], tmp_path: Path, point: str
) -> Path:
    """Crash a worker at ``point`` mid-stream, start another, and check each run happens
    once; return the second worker's log."""
    crashing, log = {**chaos_env, "TRIPWIRE_CRASH_AT": point}, tmp_path / "first.log"
    expected = Expected()
    async with await RunStore.open(chaos_env["TRIPWIRE_DATABASE_URL"]) as store:
        with worker([CHAOS_FLOWS], crashing, log) as first:
            await ready(first, log)
            # Given a stream with pairs, whose first event the correlation stage holds
            # and writes to its changelog
            stream = asyncio.create_task(expected.stream(ticks=40, pairs=8))
            # When the worker dies at the crash point in one of those batches
            await _killed_itself(first, log)
            await stream
        with worker([CHAOS_FLOWS], chaos_env, tmp_path / "second.log") as second:
            await ready(second, tmp_path / "second.log")
            # Then, once another one starts, each run happens exactly once
            await expected.exactly_once(store)
    return tmp_path / "second.log"


async def _killed_itself(process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until ``process`` SIGKILLed itself at its crash point (nothing else kills it)."""
    await eventually(lambda: process.poll() is not None, "the crash point", timeout=60)
    assert process.returncode == -signal.SIGKILL, log.read_text()[-4000:]


async def _stream_until(expected: Expected, done: asyncio.Event) -> None:
    """Publish ticks and pairs, a few a second, until ``done``."""
    while not done.is_set():
        await expected.stream(ticks=5, pairs=1, pause=0.2)


def _database(env: dict[str, str]) -> Path:
    """The SQLite file of the run store in ``env``."""
    database = make_url(env["TRIPWIRE_DATABASE_URL"]).database
    assert database, env["TRIPWIRE_DATABASE_URL"]
    return Path(database)
