"""What launchers share: errors, a run's final phase, and taking over unwatched attempts."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Container
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sensors.launchers.base import family_of
from sensors.launchers.process import pid_alive, pid_namespace, process_started
from sensors.launchers.spans import end_span, in_attempt, number_span
from sensors.runs import history as runs_history
from sensors.runs import workers
from sensors.runs.models import Attempt, RunError, RunRecord
from sensors.runs.outages import log_failure, persistently
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.errors import IllegalTransitionError
from triggers.settings import get_settings

__all__ = [
    "ADOPT_EVERY",
    "WorkerName",
    "abandoned_retries",
    "backoff_left",
    "begin_attempt",
    "cancel_watchers",
    "end_attempt",
    "finish_run",
    "keep_adopting",
    "live_runs",
    "reclaim",
    "run_error",
    "system_error",
    "take_over",
    "this_host",
    "worker_alive",
    "worker_here",
    "worker_name",
]

ADOPT_EVERY = 60.0  # seconds between a launcher's looks for attempts nobody watches

log = logging.getLogger(__name__)


class WorkerName(NamedTuple):
    """A worker's name taken apart (see :func:`worker_name`)."""

    host: str
    pid: int
    instance: str | None  # None: a name from before instances, host:pid
    started: int | None  # the process's start, in clock ticks since boot, where known
    namespace: str | None  # its pid namespace; "" unknown, None an old name

    @classmethod
    def parse(cls, name: str | None) -> WorkerName | None:
        """``name`` taken apart; None if it is no worker's name. A hostname has no colon."""
        parts = (name or "").split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            return None
        if len(parts) == 2:
            return cls(parts[0], int(parts[1]), None, None, None)
        started, _, rest = parts[2].partition("-")
        namespace, dash, _ = rest.partition("-")
        return cls(
            parts[0],
            int(parts[1]),
            parts[2],
            int(started) if started.isdigit() else None,
            namespace if dash else None,
        )


def worker_name() -> str:
    """This worker as claims, attempts, errors and logs name it: ``host:pid:instance``.

    ``instance`` tells this process start from any other with the same host and pid (a
    restarted container runs its worker as PID 1 again, under the same hostname), so a
    worker on the host can tell whether the one named is still running:
    ``started-namespace-random``, the process's start in clock ticks since boot and its pid
    namespace (each empty where /proc cannot tell), then random hex, which keeps names apart
    where neither can be read. Named once per process; a forked child names itself anew.
    """
    pid = os.getpid()
    return f"{this_host()}:{pid}:{_instance(pid)}"


def this_host() -> str:
    """The host this worker names itself after: ``TRIPWIRE_WORKER_HOST``, else the machine's
    hostname. Workers of one host tell each other's liveness from pids; workers of
    different hosts from heartbeats (:mod:`sensors.runs.workers`)."""
    return get_settings().worker_host or socket.gethostname()


@functools.cache  # by pid, so that a forked child does not inherit its parent's
def _instance(pid: int) -> str:
    started = process_started(pid)
    return f"{'' if started is None else started}-{pid_namespace()}-{secrets.token_hex(4)}"


def worker_here(name: str | None) -> WorkerName | None:
    """The worker named ``name`` if it ran where this process sees its pid: on this host
    and, where the name tells, in this pid namespace. None for any other worker, and for
    what is no worker's name."""
    worker = WorkerName.parse(name)
    if worker is None or worker.host != this_host():
        return None
    if worker.namespace is not None and worker.namespace != pid_namespace():
        return None  # another container with the same hostname: its pids are not ours
    return worker


def worker_alive(worker: WorkerName) -> bool:
    """Whether the process start that ``worker``, one :func:`worker_here`, names still runs.

    A name from before instances (host:pid) goes by its pid alone. Otherwise the process
    now at that pid must be the same start: this process itself, or one that started when
    the name says (where the name or /proc cannot tell, a live pid is taken for it).
    """
    if worker.instance is None:
        return pid_alive(worker.pid)
    if worker.pid == os.getpid():
        return worker.instance == _instance(worker.pid)
    if not pid_alive(worker.pid):
        return False
    started = process_started(worker.pid)
    return worker.started is None or started is None or started == worker.started


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
    span: Any = None,
) -> Attempt:
    """Record the run's next attempt, waiting out an outage of the store; ``span``, the
    attempt's (:mod:`sensors.launchers.spans`), is named after its number, and the store
    keeps its trace context, which the attempt's lifecycle events carry."""
    traced = in_attempt(run, span) if span is not None else None
    attempt = await persistently(
        f"run {run.name}: recording its attempt",
        runs_history.start_attempt,
        store,
        *run.key,
        pid=pid,
        worker=worker,
        phase=phase,
        traceparent=traced.traceparent if traced else None,
        tracestate=traced.tracestate if traced else None,
    )
    number_span(span, attempt.number)
    return attempt


async def end_attempt(
    store: RunStore,
    run: RunRecord,
    number: int,
    phase: AttemptPhase,
    error: RunError | None,
    span: Any = None,
) -> None:
    """Record how attempt ``number`` ended, waiting out an outage of the store, and end its
    ``span`` (:mod:`sensors.launchers.spans`) with that phase and error."""
    end_span(span, phase, error)
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
    store: RunStore,
    run: RunRecord,
    phase: WorkflowPhase,
    error: RunError | None,
    outputs: dict[str, Any] | None = None,
) -> None:
    """Record a run's final phase, and what it reported about itself; a run aborted
    meanwhile ends ABORTED. Waits out an outage of the store; raises nothing else."""

    async def record() -> WorkflowPhase:
        try:
            await store.transition(
                run.project, run.domain, run.name, phase, error=error, outputs=outputs
            )
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
    store: RunStore,
    live: list[RunRecord],
    family: str,
    stale: datetime,
    worker: str,
    gone: Container[str] = (),
) -> list[RunRecord]:
    """Claim again the ``live`` runs of ``family`` whose worker died after claiming them
    (QUEUED -> RUNNING) and before their first attempt began; the caller starts them.

    A claimer on this host is dead when its process start is (:func:`worker_alive`); one
    elsewhere when its heartbeat stopped (named in ``gone``), or when the claim is older
    than ``stale`` (remote launchers begin an attempt as soon as they claim; a local run
    may wait for a slot, so pass a ``stale`` that never comes for it)."""
    taken = []
    for run in live:
        if run.phase != WorkflowPhase.RUNNING or family_of(run.target) != family:
            continue
        if run.attempts or not run.claimed_by:
            continue
        claimer = worker_here(run.claimed_by)
        if claimer is not None:
            if worker_alive(claimer):
                continue
        elif run.claimed_by not in gone and run.updated_at > stale:
            continue
        if await runs_history.take_claim(store, *run.key, run.claimed_by, worker):
            log.warning("run %s: %s claimed it and stopped; starting it", run.name, run.claimed_by)
            taken.append(run.model_copy(update={"claimed_by": worker}))
    return taken


async def abandoned_retries(
    store: RunStore, live: list[RunRecord], family: str, worker: str
) -> list[tuple[RunRecord, Attempt]]:
    """Take the ``live`` runs of ``family`` whose worker died while they waited for a retry
    (their last attempt RETRYABLE_FAILED, its worker dead on this host or gone from its
    heartbeat elsewhere); return each with that attempt. Compare-and-set on the old worker,
    so one live worker takes each. The caller starts the retry when its backoff is over
    (:func:`backoff_left`)."""
    waiting: dict[str, tuple[RunRecord, Attempt]] = {}
    for run in live:
        if family_of(run.target) != family or run.phase != WorkflowPhase.RUNNING:
            continue
        if run.attempts:
            attempt = (await runs_history.attempts(store, *run.key))[-1]
            if attempt.phase == AttemptPhase.RETRYABLE_FAILED and attempt.worker:
                waiting[run.name] = (run, attempt)
    names = [a.worker for _, a in waiting.values() if a.worker and not worker_here(a.worker)]
    gone = await workers.gone(store, names)
    taken = []
    for run, attempt in waiting.values():
        here = worker_here(attempt.worker)
        dead = attempt.worker in gone if here is None else not worker_alive(here)
        if dead and await runs_history.take_retry(
            store, *run.key, attempt.number, attempt.worker or "", worker
        ):
            log.warning("run %s: its worker %s stopped; retrying it here", run.name, attempt.worker)
            taken.append((run, attempt))
    return taken


def backoff_left(run: RunRecord, failed: Attempt) -> float:
    """Seconds until the retry after attempt ``failed`` is due: the backoff doubles with
    each attempt, counted from the attempt's end."""
    backoff = run.retry_backoff_seconds * 2 ** (failed.number - 1)
    ended = failed.finished_at or datetime.now(UTC)
    return max(0.0, backoff - (datetime.now(UTC) - ended).total_seconds())


async def keep_adopting(adopt: Callable[[], Awaitable[Any]], every: float = ADOPT_EVERY) -> None:
    """Call ``adopt`` every ``every`` seconds, for as long as the task lives."""
    while True:
        await asyncio.sleep(every)
        try:
            await adopt()
        except Exception:
            log_failure(log, "looking for unwatched attempts failed; will try again")


async def cancel_watchers(
    adopter: asyncio.Task[None] | None, tasks: set[asyncio.Task[None]]
) -> None:
    """Stop a launcher's adopter and the tasks that follow its runs, as the worker stops;
    wait a moment for them to end (a run that ends meanwhile records its phase)."""
    if adopter is not None:
        adopter.cancel()
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.wait(set(tasks), timeout=5)
