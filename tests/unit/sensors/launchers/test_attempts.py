"""Worker names and reclaiming the runs of a worker that died after claiming them: a name
tells one process start from the next one with the same host and pid (a restarted container
runs its worker as PID 1 again), so a restarted worker reclaims what its predecessor left."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensors.launchers.attempts import (
    live_runs,
    reclaim,
    worker_alive,
    worker_here,
    worker_name,
)
from sensors.launchers.process import pid_namespace
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.runs import new_run
from triggers.settings import Settings

NEVER = datetime.min.replace(tzinfo=UTC)  # a stale time that never comes, as local:// passes
HOST = socket.gethostname()
NAMESPACE = pid_namespace()


def earlier_start(pid: int, namespace: str = NAMESPACE) -> str:
    """The name of a worker that had ``pid`` before: it started at tick 1 (since boot)."""
    return f"{HOST}:{pid}:1-{namespace}-deadbeef"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    settings = Settings(home=tmp_path, database_url=None, objects_url=None)
    async with await RunStore.open(settings.store_url) as opened:
        yield opened


@pytest.fixture
def other_worker() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Another worker process on this host, alive, and the name it goes by."""
    code = (
        "import sys\n"
        "from sensors.launchers.attempts import worker_name\n"
        "print(worker_name(), flush=True)\n"
        "sys.stdin.read()\n"  # until the test closes its stdin
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        name = process.stdout.readline().strip()
        try:
            yield process, name
        finally:
            process.stdin.close()
            process.wait(10)


async def claimed(store: RunStore, by: str) -> RunRecord:
    """A local run claimed by worker ``by`` (QUEUED -> RUNNING) that has no attempt yet."""
    run, _ = await store.create_run(new_run())
    return await store.transition(
        *run.key, WorkflowPhase.RUNNING, expected=WorkflowPhase.QUEUED, claimed_by=by
    )


async def reclaimed(store: RunStore) -> list[str]:
    """The runs this worker's local launcher reclaims, by name."""
    taken = await reclaim(store, await live_runs(store), "local", NEVER, worker_name())
    return [run.name for run in taken]


async def test_a_run_claimed_by_a_previous_start_with_the_same_host_and_pid_is_reclaimed(
    store: RunStore,
) -> None:
    # Given a run claimed by an earlier process start that had this process's pid
    # (a container restarted: its worker is PID 1 again, on the same hostname)
    run = await claimed(store, earlier_start(os.getpid()))
    # When this worker looks for orphaned claims
    # Then it takes the run over, since its claimer is gone
    assert await reclaimed(store) == [run.name]
    current = await store.get_run(run.name, project=run.project, domain=run.domain)
    assert current.claimed_by == worker_name()


async def test_a_run_claimed_by_this_very_process_is_not_reclaimed(store: RunStore) -> None:
    await claimed(store, worker_name())
    assert await reclaimed(store) == []


async def test_a_run_claimed_by_another_live_worker_on_this_host_is_not_reclaimed(
    store: RunStore, other_worker: tuple[subprocess.Popen[str], str]
) -> None:
    _, name = other_worker
    await claimed(store, name)
    assert await reclaimed(store) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc for start times")
async def test_a_run_claimed_by_an_earlier_start_at_a_pid_another_process_now_has_is_reclaimed(
    store: RunStore, other_worker: tuple[subprocess.Popen[str], str]
) -> None:
    # Given a live process at a pid, and a claim by an earlier process start at that pid
    process, _ = other_worker
    run = await claimed(store, earlier_start(process.pid))
    # Then the claim is taken over: the process at that pid is not the claimer
    assert await reclaimed(store) == [run.name]


async def test_a_claim_from_another_pid_namespace_with_this_hostname_waits_until_stale(
    store: RunStore,
) -> None:
    # Given a claim by a worker in another container that shares this hostname (host
    # networking), at this process's pid: that pid is another process there
    run = await claimed(store, earlier_start(os.getpid(), namespace=NAMESPACE + "1"))
    live = await live_runs(store)
    # Then its pid tells nothing here: local runs never reclaim it, others once it is stale
    assert await reclaim(store, live, "local", NEVER, worker_name()) == []
    taken = await reclaim(store, live, "local", datetime.now(UTC), worker_name())
    assert [r.name for r in taken] == [run.name]


async def test_a_run_claimed_by_a_worker_that_exited_is_reclaimed(
    store: RunStore, other_worker: tuple[subprocess.Popen[str], str]
) -> None:
    process, name = other_worker
    run = await claimed(store, name)
    assert process.stdin is not None
    process.stdin.close()
    process.wait(10)
    assert await reclaimed(store) == [run.name]


async def test_an_old_style_name_of_a_live_pid_on_this_host_is_not_reclaimed(
    store: RunStore, other_worker: tuple[subprocess.Popen[str], str]
) -> None:
    # Given a claim from before names had an instance: host:pid, of a live process
    process, _ = other_worker
    await claimed(store, f"{HOST}:{process.pid}")
    # Then it is left alone, as it always was
    assert await reclaimed(store) == []


async def test_an_old_style_name_of_a_dead_pid_on_this_host_is_reclaimed(store: RunStore) -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as process:
        process.wait(10)
    run = await claimed(store, f"{HOST}:{process.pid}")
    assert await reclaimed(store) == [run.name]


async def test_a_claim_from_another_host_is_reclaimed_only_once_stale(store: RunStore) -> None:
    run = await claimed(store, f"elsewhere.example:{os.getpid()}:1--deadbeef")
    live = await live_runs(store)
    assert await reclaim(store, live, "local", NEVER, worker_name()) == []
    taken = await reclaim(store, live, "local", datetime.now(UTC), worker_name())
    assert [r.name for r in taken] == [run.name]


def test_a_forked_child_has_another_worker_name_than_its_parent() -> None:
    # Given a parent that has named itself
    parent = worker_name()
    names_r, names_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its name, wait for the parent, and leave without pytest
        try:
            os.close(names_r)
            os.close(done_w)
            os.write(names_w, worker_name().encode())
            os.close(names_w)
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(names_w)
    os.close(done_r)
    try:
        with os.fdopen(names_r) as names:
            child = names.read()
        # Then the child named itself, not after its parent: its own pid and instance,
        # so that a worker on this host sees it alive while it runs
        claimer = worker_here(child)
        assert claimer is not None and claimer.pid == pid
        assert claimer.instance != parent.rpartition(":")[2]
        assert worker_alive(claimer)
        assert worker_name() == parent
    finally:
        os.close(done_w)
        os.waitpid(pid, 0)


def test_a_worker_name_leads_with_host_and_pid() -> None:
    host, pid, instance = worker_name().split(":")
    assert (host, pid) == (HOST, str(os.getpid())) and instance
