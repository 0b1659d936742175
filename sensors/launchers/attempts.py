"""What launchers share: errors, a run's final phase, and taking over unwatched attempts."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sensors.launchers.base import family_of
from sensors.launchers.process import pid_alive
from sensors.runs import history as runs_history
from sensors.runs.models import Attempt, RunError, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore, log_failure, persistently
from triggers.errors import IllegalTransitionError

__all__ = [
    "ADOPT_EVERY",
    "begin_attempt",
    "end_attempt",
    "finish_run",
    "keep_adopting",
    "live_runs",
    "reclaim",
    "run_error",
    "system_error",
    "take_over",
    "worker_name",
]

ADOPT_EVERY = 60.0  # seconds between a launcher's looks for attempts nobody watches

log = logging.getLogger(__name__)


def worker_name() -> str:
    """This worker as errors and attempts name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_error(
    code: str, kind: ErrorKind, message: str, worker: str, traceback: str | None = None
) -> RunError:
    return RunError(
        code=code,
        kind=kind,
        message=message,
        traceback=traceback,
        timestamp=datetime.now(UTC),
        worker=worker,
    )


def system_error(code: str, message: str, worker: str, traceback: str | None = None) -> RunError:
    return run_error(code, ErrorKind.SYSTEM, message, worker, traceback)


async def begin_attempt(
    store: RunStore,
    run: RunRecord,
    worker: str,
    *,
    pid: int | None = None,
    phase: AttemptPhase = AttemptPhase.RUNNING,
) -> Attempt:
    """Record the run's next attempt, waiting out an outage of the store."""
    return await persistently(
        f"run {run.name}: recording its attempt",
        runs_history.start_attempt,
        store,
        *run.key,
        pid=pid,
        worker=worker,
        phase=phase,
    )


async def end_attempt(
    store: RunStore, run: RunRecord, number: int, phase: AttemptPhase, error: RunError | None
) -> None:
    """Record how attempt ``number`` ended, waiting out an outage of the store."""
    await persistently(
        f"run {run.name}: recording the end of attempt {number}",
        runs_history.finish_attempt,
        store,
        *run.key,
        number,
        phase,
        error,
    )


async def finish_run(
    store: RunStore, run: RunRecord, phase: WorkflowPhase, error: RunError | None
) -> None:
    """Record a run's final phase; a run aborted meanwhile ends ABORTED. Waits out an outage
    of the store; raises nothing else."""

    async def record() -> WorkflowPhase:
        try:
            await store.transition(run.project, run.domain, run.name, phase, error=error)
        except IllegalTransitionError:
            # Aborted while it was ending: ABORTING can only end ABORTED.
            current = await store.get_run(run.name, project=run.project, domain=run.domain)
            if current.phase != WorkflowPhase.ABORTING:
                raise
            await store.transition(run.project, run.domain, run.name, WorkflowPhase.ABORTED)
            return WorkflowPhase.ABORTED
        return phase

    try:
        phase = await persistently(f"run {run.name}: recording phase {phase}", record)
    except Exception:
        log.exception("run %s: could not record phase %s", run.name, phase)
    if error is None:
        log.info("run %s %s", run.name, phase)
    else:
        log.warning("run %s %s (%s): %s", run.name, phase, error.kind, error.message)


async def live_runs(store: RunStore) -> list[RunRecord]:
    """The runs a launcher may have to take over: RUNNING or ABORTING. A launcher's
    ``adopt`` lists them once and hands them to :func:`take_over` and :func:`reclaim`."""
    return await store.list_runs(
        phase=(WorkflowPhase.RUNNING, WorkflowPhase.ABORTING), limit=10_000
    )


async def take_over(
    store: RunStore,
    live: list[RunRecord],
    family: str,
    stale: datetime,
    worker: str,
    skip: set[str],
) -> list[tuple[RunRecord, Attempt]]:
    """Take over the attempts of the ``live`` runs of ``family`` whose watcher last renewed
    its lease (the attempt's ``updated_at``) before ``stale``: their worker died.
    Compare-and-set on the old watcher, so two workers never both take one. Runs named in
    ``skip`` are left."""
    taken = []
    for run in live:
        if family_of(run.target) != family or run.name in skip or not run.attempts:
            continue
        attempt = (await runs_history.attempts(store, *run.key))[-1]
        if attempt.finished_at is not None or attempt.updated_at > stale:
            continue
        if await runs_history.adopt_attempt(
            store, *run.key, attempt.number, attempt.worker or "", worker
        ):
            log.warning("run %s: taking it over from %s", run.name, attempt.worker)
            taken.append((run, attempt))
    return taken


async def reclaim(
    store: RunStore, live: list[RunRecord], family: str, stale: datetime, worker: str
) -> list[RunRecord]:
    """Claim again the ``live`` runs of ``family`` whose worker died after claiming them
    (QUEUED -> RUNNING) and before their first attempt began; the caller starts them.

    A claimer on this host is dead when its process is; one elsewhere when the claim is
    older than ``stale`` (remote launchers begin an attempt as soon as they claim; a local
    run may wait for a slot, so only its own host can tell it is orphaned: pass a ``stale``
    that never comes for it)."""
    host = socket.gethostname()
    taken = []
    for run in live:
        if run.phase != WorkflowPhase.RUNNING or family_of(run.target) != family:
            continue
        if run.attempts or not run.claimed_by:
            continue
        claimer_host, _, pid = run.claimed_by.rpartition(":")
        if claimer_host == host and pid.isdigit():
            if pid_alive(int(pid)):
                continue
        elif run.updated_at > stale:
            continue
        if await runs_history.take_claim(store, *run.key, run.claimed_by, worker):
            log.warning("run %s: %s claimed it and stopped; starting it", run.name, run.claimed_by)
            taken.append(run.model_copy(update={"claimed_by": worker}))
    return taken


async def keep_adopting(adopt: Callable[[], Awaitable[Any]], every: float = ADOPT_EVERY) -> None:
    """Call ``adopt`` every ``every`` seconds, for as long as the task lives."""
    while True:
        await asyncio.sleep(every)
        try:
            await adopt()
        except Exception:
            log_failure(log, "looking for unwatched attempts failed; will try again")
