"""Workers and launchers killed mid-stream: every run still happens, once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest

from sensors.runs import history as runs_history
from sensors.runs.models import PhaseChange, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.chaos import CHAOS_FLOWS, Expected, runs_at_least
from tests.fixtures.engine import finished_run
from tests.fixtures.kafka import whole_topic
from tests.fixtures.processes import kill, ready, stopped, worker
from tests.fixtures.waits import eventually
from triggers import publish

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


async def test_a_worker_sigkilled_mid_stream_then_restarted(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    log, expected = tmp_path / "worker.log", Expected()
    async with await RunStore.open(chaos_env["TRIPWIRE_DATABASE_URL"]) as store:
        with worker([CHAOS_FLOWS], chaos_env, log) as first:
            await ready(first, log)
            # Given a stream of events, some of them held for a second one
            stream = asyncio.create_task(expected.stream(ticks=40, pairs=8))
            await eventually(lambda: runs_at_least(store, 5), "the first runs", timeout=60)
            # When the worker is SIGKILLed mid-stream, and the stream goes on without it
            kill(first)
            await stream
        with worker([CHAOS_FLOWS], chaos_env, log) as second:
            await ready(second, log, times=2)
            # Then, once restarted, each run happens exactly once
            await expected.exactly_once(store)


async def test_one_of_two_workers_killed(chaos_env: dict[str, str], tmp_path: Path) -> None:
    log, expected = tmp_path / "workers.log", Expected()
    async with await RunStore.open(chaos_env["TRIPWIRE_DATABASE_URL"]) as store:
        with (
            worker([CHAOS_FLOWS], chaos_env, log) as one,
            worker([CHAOS_FLOWS], chaos_env, log) as two,
        ):
            await ready(one, log, times=2)
            await ready(two, log, times=2)
            # Given two workers sharing the stream
            stream = asyncio.create_task(expected.stream(ticks=40, pairs=8))
            await eventually(lambda: runs_at_least(store, 5), "the first runs", timeout=60)
            # When one of them is SIGKILLed
            kill(two)
            await stream
            # Then the other takes its partitions and runs, and each run happens once
            await expected.exactly_once(store)
            assert one.poll() is None


@pytest.mark.parametrize("elsewhere", [False, True], ids=["same host", "another host"])
async def test_the_launcher_killed_between_queued_and_running(
    chaos_env: dict[str, str], tmp_path: Path, pg_url: str, elsewhere: bool
) -> None:
    # Given a worker that dies the moment it has claimed a run (QUEUED -> RUNNING), before
    # the run's first attempt: a crash point, since that moment lasts a few milliseconds
    first, then = _hosts(chaos_env, pg_url) if elsewhere else (chaos_env, chaos_env)
    log, expected = tmp_path / "worker.log", Expected()

    async def three_runs() -> None:
        for n in range(3):
            await _publish(expected, "chaos_slow", {"n": n, "seconds": 1})

    async with await RunStore.open(then["TRIPWIRE_DATABASE_URL"]) as store:
        crashed = await _crashed_at("launch.claimed", first, log, three_runs)
        claimed = await eventually(
            lambda: _claimed_not_started(store), "a claimed run without an attempt"
        )
        assert claimed.claimed_by and claimed.claimed_by.split(":")[1] == str(crashed)
        with worker([CHAOS_FLOWS], then, log) as second:
            await ready(second, log, times=2)
            # Then each run still starts, once, and the claimed one in one attempt
            runs = await expected.exactly_once(store, timeout=120)
    assert next(r for r in runs if r.name == claimed.name).attempts == 1
    assert "claimed it and stopped; starting it" in log.read_text()


async def test_the_worker_killed_after_an_attempt_ended_and_before_its_run_did(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a worker that dies once a run's attempt is recorded as ended, before the run
    # is (a warm run takes milliseconds, so a SIGKILL from outside lands there too)
    log, expected = tmp_path / "worker.log", Expected()
    crash = _crash("launch.attempt_ended", chaos_env, chaos_env, log, lambda: expected.tick(0))
    async with crash as store:
        # Then the next worker ends the run as its attempt did, once
        [run] = await expected.exactly_once(store, timeout=60)
    assert run.attempts == 1
    assert "stopped; ending it" in log.read_text()


async def test_the_worker_killed_after_recording_an_attempt_and_before_letting_it_start(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a worker that dies once it recorded a run's attempt, before it let the run's
    # process through its gate (in a burst of runs, a SIGKILL from outside lands there
    # too), and runs with no system retries
    log, expected = tmp_path / "worker.log", Expected()
    crash = _crash("launch.attempt_recorded", chaos_env, chaos_env, log, lambda: expected.tick(0))
    async with crash as store:
        # Then the next worker learns that nothing of the flow ran, and starts it, once
        [run] = await expected.exactly_once(store, timeout=60)
        attempts = await runs_history.attempts(store, *run.key)
    assert [a.phase for a in attempts] == [AttemptPhase.RETRYABLE_FAILED, AttemptPhase.SUCCEEDED]
    assert attempts[0].error is not None and attempts[0].error.code == "NotStarted"
    assert "nothing of the flow ran" in attempts[0].error.message


async def test_an_attempt_that_never_started_spends_none_of_the_runs_system_retries(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    # Given runs with one system retry, and a worker that dies before it lets one start
    env = {**chaos_env, "TRIPWIRE_SYSTEM_RETRIES": "1"}
    log, expected, marker = tmp_path / "worker.log", Expected(), tmp_path / "slept"
    payload: dict[str, object] = {"marker": str(marker)}
    cause = partial(_publish, expected, "chaos_sleeps_once", payload)
    async with _crash("launch.attempt_recorded", env, env, log, cause) as store:
        # When the next attempt's process is killed as it runs
        await eventually(marker.exists, "the next attempt to begin its sleep", timeout=60)
        running = await eventually(lambda: _with_pid(store), "the run's process")
        os.killpg(running.pid, signal.SIGKILL)
        # Then that death is the one the system retry is for: a third attempt succeeds
        [run] = await expected.exactly_once(store, timeout=90)
        attempts = await runs_history.attempts(store, *run.key)
    codes = [(a.phase, a.error.code if a.error else None) for a in attempts]
    assert codes == [
        (AttemptPhase.RETRYABLE_FAILED, "NotStarted"),
        (AttemptPhase.RETRYABLE_FAILED, "ProcessKilled"),
        (AttemptPhase.SUCCEEDED, None),
    ]


@pytest.mark.parametrize("elsewhere", [False, True], ids=["same host", "another host"])
async def test_the_worker_killed_while_a_run_waited_for_its_retry(
    chaos_env: dict[str, str], tmp_path: Path, pg_url: str, elsewhere: bool
) -> None:
    # Given a worker that dies once a run's first attempt failed and before its retry began
    # (on another host, the next worker learns it from its heartbeat, not its process)
    first, then = _hosts(chaos_env, pg_url) if elsewhere else (chaos_env, chaos_env)
    log, expected = tmp_path / "worker.log", Expected()
    marker: dict[str, object] = {"marker": str(tmp_path / "failed")}
    cause = partial(_publish, expected, "chaos_fails_once", marker)
    async with _crash("launch.attempt_ended", first, then, log, cause) as store:
        # Then the next worker runs the retry, once, and the run succeeds
        [run] = await expected.exactly_once(store, timeout=60)
        attempts = await runs_history.attempts(store, *run.key)
    assert [a.phase for a in attempts] == [AttemptPhase.RETRYABLE_FAILED, AttemptPhase.SUCCEEDED]
    assert attempts[1].worker and attempts[1].worker.startswith("host-b:") == elsewhere
    # the same host tells from the process, another from the heartbeat
    assert ("retrying it here" in log.read_text()) == elsewhere
    assert "stopped; retrying it" in log.read_text()


@contextlib.asynccontextmanager
async def _crash(
    point: str,
    first: dict[str, str],
    then: dict[str, str],
    log: Path,
    cause: Callable[[], Awaitable[object]],
) -> AsyncIterator[RunStore]:
    """A worker (``first``'s environment) that dies at crash ``point`` once ``cause`` ran,
    then another one (``then``'s) started: the run store, while the other one runs."""
    async with await RunStore.open(then["TRIPWIRE_DATABASE_URL"]) as store:
        await _crashed_at(point, first, log, cause)
        with worker([CHAOS_FLOWS], then, log) as second:
            await ready(second, log, times=2)
            yield store


async def _crashed_at(
    point: str, env: dict[str, str], log: Path, cause: Callable[[], Awaitable[object]]
) -> int:
    """Start a worker that dies at crash ``point``, ``cause`` what makes it get there, and
    wait until it died there; return its pid."""
    with worker([CHAOS_FLOWS], {**env, "TRIPWIRE_CRASH_AT": point}, log) as crashing:
        await ready(crashing, log)
        await cause()
        await eventually(lambda: crashing.poll() is not None, "the crash point", timeout=60)
        assert crashing.returncode == -signal.SIGKILL, log.read_text()[-4000:]
        return crashing.pid


async def test_a_run_process_killed_fails_as_system_and_is_retried(
    chaos_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**chaos_env, "TRIPWIRE_SYSTEM_RETRIES": "1"}
    log, expected = tmp_path / "worker.log", Expected()
    async with await RunStore.open(env["TRIPWIRE_DATABASE_URL"]) as store:
        with worker([CHAOS_FLOWS], env, log) as process:
            await ready(process, log)
            marker = tmp_path / "slept"
            await _publish(expected, "chaos_sleeps_once", {"marker": str(marker)})
            await eventually(marker.exists, "the flow to begin its sleep")
            running = await eventually(lambda: _with_pid(store), "the run's process")
            # When the run's process is SIGKILLed
            os.killpg(running.pid, signal.SIGKILL)
            # Then its attempt fails as SYSTEM, and a second attempt runs it to the end
            [run] = await expected.exactly_once(store)
            first, second = await runs_history.attempts(store, *run.key)
    assert first.phase == AttemptPhase.RETRYABLE_FAILED
    assert first.error is not None and first.error.kind == ErrorKind.SYSTEM
    assert first.error.code == "ProcessKilled" and "SIGKILL" in first.error.message
    assert second.phase == AttemptPhase.SUCCEEDED


async def _publish(expected: Expected, name: str, payload: dict[str, object]) -> str:
    event_id = await publish.aio(name, payload)
    expected.runs.append(frozenset([event_id]))
    return event_id


async def _claimed_not_started(store: RunStore) -> RunRecord | None:
    running = await store.list_runs(phase=WorkflowPhase.RUNNING, limit=100)
    return next((r for r in running if r.attempts == 0 and r.claimed_by), None)


async def _with_pid(store: RunStore) -> RunRecord | None:
    running = await store.list_runs(phase=WorkflowPhase.RUNNING, limit=100)
    return next((r for r in running if r.pid), None)


async def test_three_workers_on_postgresql_publish_each_lifecycle_event_once(
    chaos_env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    # two partitions per topic (chaos_env's), so one of the three workers stands by in each
    # group (which one, and whether it says so as it starts, depends on when each joined)
    env = {**chaos_env, "TRIPWIRE_DATABASE_URL": pg_url}
    log, expected = tmp_path / "workers.log", Expected()
    async with await RunStore.open(pg_url) as store:
        with (
            worker([CHAOS_FLOWS], env, log) as one,
            worker([CHAOS_FLOWS], env, log) as two,
            worker([CHAOS_FLOWS], env, log) as three,
        ):
            for process in (one, two, three):
                await ready(process, log, times=3)
            # Given three workers relaying one outbox while runs come and go
            await expected.stream(ticks=30, pairs=6)
            await expected.exactly_once(store)
            await eventually(
                lambda: _all_published(store), "every phase change published", timeout=60
            )
            changes = await _all_changes(store)
    # Then each phase change is on the topic once, and each run's changes in order
    records = await whole_topic(env["TRIPWIRE_KAFKA_BOOTSTRAP"], env["TRIPWIRE_TOPIC_RUN_EVENTS"])
    ids = [dict(r.headers)["ce_id"].decode() for r in records]
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not repeated, f"published more than once: {repeated[:10]}"
    project, domain = changes[0].project, changes[0].domain
    assert set(ids) == {f"{project}.{domain}.phase-{c.id}" for c in changes}
    by_run: dict[bytes, list[int]] = {}
    for record in records:  # one run's events share a key, so a partition, so an order
        by_run.setdefault(record.key, []).append(int(dict(record.headers)["ce_id"].split(b"-")[-1]))
    assert all(order == sorted(order) for order in by_run.values())


async def _all_changes(store: RunStore) -> list[PhaseChange]:
    runs = await store.list_runs(limit=10_000)
    return [c for run in runs for c in await runs_history.history(store, *run.key)]


async def _all_published(store: RunStore) -> bool:
    return not await runs_history.unpublished_changes(store, limit=1)


# Two hosts: workers that cannot see each other's processes, only their heartbeats


def _hosts(env: dict[str, str], pg_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """The environments of a worker on "host-a" and one on "host-b", sharing PostgreSQL;
    heartbeats every second, so that one silent for 6 s is gone (a live worker's beats
    can be seconds late on a loaded machine: half a second made it look gone)."""
    shared = {**env, "TRIPWIRE_DATABASE_URL": pg_url, "TRIPWIRE_WORKER_HEARTBEAT": "1"}
    return {**shared, "TRIPWIRE_WORKER_HOST": "host-a"}, {
        **shared,
        "TRIPWIRE_WORKER_HOST": "host-b",
    }


@pytest.mark.parametrize("aborted", [False, True], ids=["running", "aborting"])
async def test_a_run_of_a_worker_on_another_host_that_stopped_is_settled(
    chaos_env: dict[str, str], tmp_path: Path, pg_url: str, aborted: bool
) -> None:
    host_a, host_b = _hosts(chaos_env, pg_url)
    log = tmp_path / "workers.log"
    marker = {"marker": str(tmp_path / "slept")}
    orphan = 0
    async with await RunStore.open(host_b["TRIPWIRE_DATABASE_URL"]) as store:
        try:
            stack = contextlib.ExitStack()  # host-b's worker, which outlives host-a's
            with worker([CHAOS_FLOWS], host_a, log) as first:
                await ready(first, log, times=1)
                # Given a run whose process host-a's worker watches, and a worker on host-b
                event_id = await publish.aio("chaos_sleeps_once", marker)
                run = await eventually(
                    lambda: _watched_by(store, event_id, "host-a:"), "the run on host-a"
                )
                orphan = (await runs_history.attempts(store, *run.key))[-1].pid or 0
                other = stack.enter_context(worker([CHAOS_FLOWS], host_b, log))
                await ready(other, log, times=2)
                # When host-a's worker is SIGKILLed (its run process goes on, on host-a)
                kill(first)
            with stack:
                if aborted:
                    await store.request_abort(run.project, run.domain, run.name, "test")
                # Then the worker on host-b settles the run once host-a's heartbeat stopped
                ended = await eventually(
                    lambda: _ended(store, run.name), "the run settled", timeout=60
                )
                attempts = await runs_history.attempts(store, *run.key)
        finally:
            stack.close()
            if orphan:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(orphan, signal.SIGKILL)  # the run process, in its own session
    assert ended.phase == (WorkflowPhase.ABORTED if aborted else WorkflowPhase.FAILED)
    assert ended.error is not None and ended.error.code == "WorkerLost"
    assert "tripwire runs recover" in ended.error.message
    [attempt] = attempts
    assert attempt.phase == (AttemptPhase.ABORTED if aborted else AttemptPhase.FAILED)
    assert attempt.worker and attempt.worker.startswith("host-b:")


async def _watched_by(store: RunStore, event_id: str, host: str) -> RunRecord | None:
    for run in await store.list_runs(phase=(WorkflowPhase.RUNNING,), limit=100):
        if any(e["id"] == event_id for e in run.events) and run.attempts:
            attempt = (await runs_history.attempts(store, *run.key))[-1]
            if attempt.phase == AttemptPhase.RUNNING and (attempt.worker or "").startswith(host):
                return run
    return None


async def _ended(store: RunStore, name: str) -> RunRecord | None:
    run = await store.get_run(name)
    return run if run.finished_at is not None else None


async def test_a_worker_paused_after_claiming_a_run_and_taken_for_gone_runs_none_of_it(
    chaos_env: dict[str, str], tmp_path: Path, pg_url: str
) -> None:
    host_a, host_b = _hosts(chaos_env, pg_url)
    pausing = {**host_a, "TRIPWIRE_PAUSE_AT": "launch.claimed"}
    a_log, b_log, marker = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "ran"
    async with await RunStore.open(pg_url) as store:
        with worker([CHAOS_FLOWS], pausing, a_log) as a:
            await ready(a, a_log)
            # Given a worker that stops the moment it has claimed a run, before it begins it
            event_id = await publish.aio("chaos_counted", {"marker": str(marker)})
            await eventually(lambda: stopped(a.pid), "the worker stopped at its claim")
            # When the others take it for gone, and a worker on another host runs the run
            with worker([CHAOS_FLOWS], host_b, b_log) as b:
                await ready(b, b_log)
                run = await finished_run(store, event_id, timeout=90)
                assert run.phase == WorkflowPhase.SUCCEEDED
                # and then the stopped worker goes on from its claim
                a.send_signal(signal.SIGCONT)
                await eventually(
                    lambda: b"not started here" in a_log.read_bytes(),
                    "the paused worker to give the run up",
                    timeout=60,
                )
                # (and, from its next heartbeat, to say it was taken for gone)
                await eventually(
                    lambda: b"took this one for gone" in a_log.read_bytes(),
                    "the paused worker to learn it was taken for gone",
                )
                assert a.poll() is None and b.poll() is None
        attempts = await runs_history.attempts(store, *run.key)
    # Then the flow ran once, on host-b; the store refused the paused worker's attempt, and
    # the process it had started ran none of the flow
    assert marker.read_text().splitlines() == ["ran"]
    assert [(at.number, (at.worker or "").split(":")[0]) for at in attempts] == [(1, "host-b")]
    assert b"took this one for gone" in a_log.read_bytes()
