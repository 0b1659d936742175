"""``local://`` and ``command://``: run each flow in its own process on this machine.

For ``command://`` the run process runs the flow's argv (no shell) instead of
calling the flow function, and its exit code decides: 0 is SUCCEEDED, another
a USER failure (retried like an exception), a signal SYSTEM.

The run process is ``python -m triggers.run`` (see :mod:`triggers.run`). It
gets a context file (run name, parameters, events, entrypoint) and writes a
result file, which is how a flow's own exception (USER) is told apart from a
run that could not start or died (SYSTEM). Files live in
``$TRIPWIRE_HOME/runs/<run name>/``: ``context.json``, ``result.json``, ``run.log``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sensors.faults import crash_point
from sensors.launchers.attempts import (
    WorkerName,
    backoff_left,
    begin_attempt,
    end_attempt,
    finish_run,
    keep_adopting,
    live_runs,
    reclaim,
    run_error,
    system_error,
    this_host,
    worker_alive,
    worker_here,
    worker_name,
)
from sensors.launchers.base import family_of
from sensors.launchers.process import (
    Gate,
    exit_reason,
    is_run_process,
    log_tail,
    note_forked,
    prepare,
    read_result,
    run_dir,
    signal_group,
    stop_group,
    wait_pid,
)
from sensors.launchers.spans import (
    CARRIER,
    attempt_span,
    end_span,
    in_attempt,
    launch_span,
    trace_env,
)
from sensors.launchers.zygotes import WarmProcess, Zygotes
from sensors.runs import history as runs_history
from sensors.runs import workers
from sensors.runs.models import Attempt, RunError, RunRecord
from sensors.runs.outages import log_failure, persistently
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.errors import ClaimLostError
from triggers.outcome import GATE
from triggers.settings import Settings

__all__ = ["LocalLauncher"]

log = logging.getLogger(__name__)

# How the run ends when its worker died after recording its last attempt's end.
_LOST = (AttemptPhase.FAILED, WorkflowPhase.FAILED)


def _settled(attempt: Attempt) -> WorkflowPhase:
    """The run's phase for an attempt whose end was recorded and whose run was not."""
    if attempt.error is not None and attempt.error.code == "Timeout":
        return WorkflowPhase.TIMED_OUT
    return _SETTLES[attempt.phase]


_SETTLES = {
    AttemptPhase.SUCCEEDED: WorkflowPhase.SUCCEEDED,
    AttemptPhase.FAILED: WorkflowPhase.FAILED,
    AttemptPhase.ABORTED: WorkflowPhase.ABORTED,
}


class LocalLauncher:
    """Spawns run processes, at most ``settings.max_parallel_runs`` at a time.

    Each run process leads its own process group, so abort and timeout stop
    everything it started. A USER failure is retried as a new attempt while the
    run has retries left, after its backoff (doubled each time), and so is a process
    that died without a word while ``settings.system_retries`` allow; a timeout counts
    from the first attempt and ends the run as TIMED_OUT.
    """

    def __init__(self, *, settings: Settings, store: RunStore) -> None:
        self._settings = settings
        self._store = store
        self._free = settings.max_parallel_runs  # slots, of TRIPWIRE_MAX_PARALLEL_RUNS
        self._freed = asyncio.Event()
        self._room_callbacks: list[Callable[[], None]] = []
        self._zygotes = Zygotes(settings.home / "runs") if settings.run_start == "fork" else None
        self._running: dict[str, int] = {}  # run name -> pid of its process group leader
        self._active: dict[str, RunRecord] = {}  # started here and not final, by name
        self._aborted: set[str] = set()
        self._watchers: set[asyncio.Task[None]] = set()
        self._abort_watch: asyncio.Task[None] | None = None
        self._adopter: asyncio.Task[None] | None = None
        self._closing = False
        self.worker = worker_name()

    def reserve(self) -> bool:
        if self._free <= 0 or self._closing:
            return False
        self._free -= 1
        return True

    def release(self) -> None:
        self._free += 1
        self._freed.set()
        for callback in self._room_callbacks:
            callback()

    def on_room(self, callback: Callable[[], None]) -> None:
        self._room_callbacks.append(callback)

    async def launch(self, run: RunRecord) -> None:
        self._watch(run, self._execute(run))

    def _spawn_later(self, run: RunRecord, after: float = 0.0) -> None:
        """Launch ``run``, claimed already, ``after`` seconds and once a slot is free,
        without holding up the caller (a run taken over from a worker that died)."""

        async def when_free() -> None:
            await asyncio.sleep(after)
            while not self.reserve():
                self._freed.clear()
                await self._freed.wait()
            await self.launch(run)

        task = asyncio.create_task(when_free(), name=f"launch {run.name}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _watch(self, run: RunRecord, work: Coroutine[Any, Any, None]) -> None:
        self._active[run.name] = run
        task = asyncio.create_task(work, name=f"run {run.name}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        if self._abort_watch is None:
            self._abort_watch = asyncio.create_task(self._watch_aborts(), name="abort watch")

    async def adopt(self) -> list[str]:
        """Take over the local runs of a worker that died; return their names.

        On this host, a run process outlives its worker (it has its own session): one
        still going is watched from here on, as if this worker had started it; one that
        ended is settled from its result file, and one that left none ends FAILED (SYSTEM,
        WorkerLost), so it can be recovered. A run being aborted ends ABORTED.

        A worker on another host is dead when its heartbeat stopped
        (:mod:`sensors.runs.workers`). What it claimed and had not started, and what
        waited for a retry, is started here; what it had recorded the end of is ended. A
        run process it was watching runs there, where nothing here can watch or stop it:
        its run ends FAILED (SYSTEM, WorkerLost), or ABORTED if it was being aborted.
        """
        if self._adopter is None:
            self._adopter = asyncio.create_task(
                keep_adopting(self.adopt, _ADOPT_EVERY), name="adopt local runs"
            )
        taken = []
        live = [run for run in await live_runs(self._store) if family_of(run.target) == "local"]
        latest = {
            run.name: (await runs_history.attempts(self._store, *run.key))[-1]
            for run in live
            if run.attempts
        }
        elsewhere = [a.worker for a in latest.values() if a.worker and not worker_here(a.worker)]
        elsewhere += [r.claimed_by for r in live if r.claimed_by and not worker_here(r.claimed_by)]
        gone = await workers.gone(self._store, elsewhere)
        never = datetime.min.replace(tzinfo=UTC)  # a local claim waits for a slot, for long
        for run in await reclaim(self._store, live, "local", never, self.worker, gone):
            self._spawn_later(run)
            taken.append(run.name)
        for run in live:
            attempt = latest.get(run.name)
            if attempt is None:
                continue
            watcher = worker_here(attempt.worker)
            if watcher is None and attempt.worker in gone:
                if await self._settle_elsewhere(run, attempt, gone[attempt.worker]):
                    taken.append(run.name)
                continue
            if watcher is None or worker_alive(watcher):
                continue  # its worker is alive and watching it, or not on this host
            if attempt.phase in _SETTLES:
                # Its worker recorded how the attempt ended, and stopped before the run did.
                log.warning("run %s: its worker %s stopped; ending it", run.name, attempt.worker)
                await self._finish(run, _settled(attempt), attempt.error)
                taken.append(run.name)
                continue
            if attempt.phase == AttemptPhase.RETRYABLE_FAILED:
                # Its worker stopped while the run waited for its retry: retry it here.
                if await runs_history.take_retry(
                    self._store, *run.key, attempt.number, attempt.worker or "", self.worker
                ):
                    log.warning(
                        "run %s: its worker %s stopped; retrying it", run.name, attempt.worker
                    )
                    self._spawn_later(run, after=backoff_left(run, attempt))
                    taken.append(run.name)
                continue
            if attempt.phase != AttemptPhase.RUNNING:
                continue
            if not await runs_history.adopt_attempt(
                self._store, *run.key, attempt.number, attempt.worker or "", self.worker
            ):
                continue  # another worker starting now took it
            log.warning("run %s: its worker %s stopped; taking it over", run.name, attempt.worker)
            # No slot: it runs already, and waiting for one could hold up the start for hours.
            self._watch(run, self._execute(run, adopted=attempt, slot=False))
            taken.append(run.name)
        return taken

    async def _settle_elsewhere(self, run: RunRecord, attempt: Attempt, last: datetime) -> bool:
        """Settle a run whose worker on another host stopped heartbeating at ``last``;
        return whether this worker did (another one may have been first)."""
        dead = attempt.worker or ""
        if attempt.phase in _SETTLES:
            log.warning("run %s: its worker %s stopped; ending it", run.name, dead)
            await self._finish(run, _settled(attempt), attempt.error)
            return True
        if attempt.phase == AttemptPhase.RETRYABLE_FAILED:
            if not await runs_history.take_retry(
                self._store, *run.key, attempt.number, dead, self.worker
            ):
                return False
            log.warning("run %s: its worker %s stopped; retrying it here", run.name, dead)
            self._spawn_later(run, after=backoff_left(run, attempt))
            return True
        if attempt.phase not in (AttemptPhase.RUNNING, AttemptPhase.INITIALIZING):
            return False
        if not await runs_history.adopt_attempt(
            self._store, *run.key, attempt.number, dead, self.worker
        ):
            return False
        host = WorkerName.parse(dead)
        message = (
            f"its worker {dead} stopped (no heartbeat since {last.isoformat()}), and its run "
            f"process on {host.host if host else 'another host'} can be neither watched nor "
            f"stopped from {this_host()}; run it again with `tripwire runs recover {run.name}`"
        )
        error = system_error("WorkerLost", message, self.worker)
        log.warning("run %s: %s", run.name, message)
        # Aborted or not, the error says that its process may still run there.
        aborting = run.phase == WorkflowPhase.ABORTING
        phases = (AttemptPhase.ABORTED, WorkflowPhase.ABORTED) if aborting else _LOST
        await end_attempt(self._store, run, attempt.number, phases[0], error)
        await self._finish(run, phases[1], error)
        return True

    async def _execute(
        self, run: RunRecord, adopted: Attempt | None = None, *, slot: bool = True
    ) -> None:
        held = _Slot(self, slot)
        started = run.started_at or datetime.now(UTC)
        deadline = None
        if run.timeout_seconds:
            left = run.timeout_seconds - (datetime.now(UTC) - started).total_seconds()
            deadline = _now() + left
        launch = launch_span(run, self.worker)
        try:
            for retried in itertools.count():
                phase, error, retry = await self._attempt(run, deadline, adopted, held, launch)
                adopted = None
                crash_point("launch.attempt_ended")
                if not retry:
                    await self._finish(run, phase, error, launch)
                    return
                backoff = run.retry_backoff_seconds * 2**retried
                log.info("run %s: retrying in %.1fs (%s)", run.name, backoff, error)
                ended = await self._pause(run, backoff, deadline)
                if ended is not None:
                    await self._finish(run, *ended, launch)
                    return
        except ClaimLostError as exc:
            log.error("run %s: not started here: %s", run.name, exc)  # its process was stopped
        except Exception:
            log.exception("run %s: the launcher failed", run.name)
            await self._finish(
                run,
                WorkflowPhase.FAILED,
                system_error(
                    "LauncherFailed", "the launcher failed; see the worker log", self.worker
                ),
                launch,
            )
        finally:
            end_span(launch)  # cut short (the worker stops, the claim was lost): no phase
            self._active.pop(run.name, None)
            self._aborted.discard(run.name)
            held.release()

    async def _attempt(
        self,
        run: RunRecord,
        deadline: float | None,
        adopted: Attempt | None,
        slot: _Slot,
        launch: Any,
    ) -> tuple[WorkflowPhase, RunError | None, bool]:
        """Run one attempt (or watch an adopted one to its end), as a span of the ``launch``
        span when there is one; return the run's phase, its error, and whether to retry."""
        span = attempt_span(run, launch, self.worker, adopted.number if adopted else None)
        try:
            return await self._follow(in_attempt(run, span), deadline, adopted, slot, span)
        finally:
            end_span(span)  # cut short by an exception: no phase

    async def _follow(
        self,
        run: RunRecord,
        deadline: float | None,
        adopted: Attempt | None,
        slot: _Slot,
        span: Any,
    ) -> tuple[WorkflowPhase, RunError | None, bool]:
        """:meth:`_attempt`'s work. The run's ``slot`` is released as soon as its process
        ended for good, before the store records it: the slots count processes."""
        folder = run_dir(self._settings, run.name)
        gate: Gate | None = None
        if adopted is not None:
            attempt, pid = adopted, adopted.pid or 0
            ended: asyncio.Future[int | None] = asyncio.ensure_future(_adopted_end(pid, folder))
        else:
            # The process waits at the gate until the store recorded its attempt, which it
            # refuses to a worker that the others took for gone: so the flow runs only here.
            gate = Gate(folder)
            try:
                process = await self._spawn(run, folder, gate)
            except BaseException as exc:
                gate.close()
                if not isinstance(exc, Exception):
                    raise
                log.exception("run %s: could not start its process", run.name)
                message = f"could not start the run's process: {exc}"
                return await self._not_started(
                    run, system_error("SpawnFailed", message, self.worker), span
                )
            pid, ended = process.pid, asyncio.ensure_future(process.wait())
            try:
                attempt = await begin_attempt(self._store, run, self.worker, pid=pid, span=span)
            except BaseException:
                gate.close()  # an end of file: the process ends, none of the flow ran
                await stop_group(pid, ended)  # nothing may run that the store does not know of
                raise
            crash_point("launch.attempt_recorded")
            gate.open()
        self._running[run.name] = pid
        try:
            timeout = None if deadline is None else max(0.0, deadline - _now())
            try:
                code = await asyncio.wait_for(asyncio.shield(ended), timeout)
                timed_out = False
            except TimeoutError:
                await stop_group(pid, ended)
                code, timed_out = await ended, True
        finally:
            self._running.pop(run.name, None)
            if gate is not None:
                gate.close()
        if adopted is not None and Gate.refused(folder, pid):
            # Its worker died after it recorded the attempt and before it let the process
            # through: the flow never ran, so it starts now whatever the retries say.
            message = (
                f"the worker {attempt.worker} stopped before it let the run's process start; "
                "nothing of the flow ran"
            )
            return await self._unstarted(
                run, attempt, system_error("NotStarted", message, self.worker), span
            )
        failed = (
            await self._failures(run, attempt)
            if attempt.number > 1
            else dict.fromkeys(ErrorKind, 0)  # a first attempt has none before it
        )
        phase, attempt_phase, error, retry = self._outcome(
            run, folder, code, timed_out, attempt, failed
        )
        if not retry:
            slot.release()
        await end_attempt(self._store, run, attempt.number, attempt_phase, error, span)
        return phase, error, retry

    async def _not_started(
        self, run: RunRecord, error: RunError, span: Any
    ) -> tuple[WorkflowPhase, RunError | None, bool]:
        """Record an attempt whose process could not start, a SYSTEM failure, and end it
        as :meth:`_unstarted` does."""
        attempt = await begin_attempt(self._store, run, self.worker, span=span)
        return await self._unstarted(run, attempt, error, span)

    async def _unstarted(
        self, run: RunRecord, attempt: Attempt, error: RunError, span: Any
    ) -> tuple[WorkflowPhase, RunError | None, bool]:
        """End ``attempt``, whose process never ran any of the flow (``error`` says why),
        and return as :meth:`_attempt` does: retried up to ``_START_RETRIES`` times for
        the same reason, whatever ``settings.system_retries`` says."""
        earlier = await self._errors_before(run, attempt)
        unstarted = sum(1 for failure in earlier if failure.code == error.code)
        retry = unstarted < _START_RETRIES and not self._closing
        phase = AttemptPhase.RETRYABLE_FAILED if retry else AttemptPhase.FAILED
        await end_attempt(self._store, run, attempt.number, phase, error, span)
        return (WorkflowPhase.RUNNING if retry else WorkflowPhase.FAILED), error, retry

    async def _failures(self, run: RunRecord, attempt: Attempt) -> dict[ErrorKind, int]:
        """How many attempts before ``attempt`` failed, by kind of error; not those whose
        process never ran the flow, which :meth:`_unstarted` counts apart."""
        failed = dict.fromkeys(ErrorKind, 0)
        for error in await self._errors_before(run, attempt):
            if error.code not in _UNSTARTED:
                failed[error.kind] += 1
        return failed

    async def _errors_before(self, run: RunRecord, attempt: Attempt) -> list[RunError]:
        """The errors of the run's attempts before ``attempt``, first first."""
        attempts = await persistently(
            f"run {run.name}: its attempts", runs_history.attempts, self._store, *run.key
        )
        return [a.error for a in attempts if a.number < attempt.number and a.error is not None]

    def _outcome(
        self,
        run: RunRecord,
        folder: Path,
        code: int | None,
        timed_out: bool,
        attempt: Attempt,
        failed: dict[ErrorKind, int],
    ) -> tuple[WorkflowPhase, AttemptPhase, RunError | None, bool]:
        """What an ended run process means: (run phase, attempt phase, error, retry).

        ``code`` is None for an adopted process, whose exit code nobody could read;
        ``failed`` counts the earlier failed attempts by kind. An exception in the flow
        is retried ``run.retries`` times; a process that died without a word (killed,
        its worker lost) ``settings.system_retries`` times.
        """
        outcome = read_result(folder / "result.json")
        if run.name in self._aborted:
            return WorkflowPhase.ABORTED, AttemptPhase.ABORTED, None, False
        if timed_out:
            return WorkflowPhase.TIMED_OUT, AttemptPhase.FAILED, self._timeout(run), False
        if code in (0, None) and outcome.get("ok"):
            return WorkflowPhase.SUCCEEDED, AttemptPhase.SUCCEEDED, None, False
        if outcome.get("kind") == ErrorKind.USER:
            error = run_error(
                str(outcome.get("code") or "UserError"),
                ErrorKind.USER,
                str(outcome.get("message") or "the flow raised"),
                self.worker,
                outcome.get("traceback"),
            )
            if failed[ErrorKind.USER] < run.retries:
                return WorkflowPhase.RUNNING, AttemptPhase.RETRYABLE_FAILED, error, True
            return WorkflowPhase.FAILED, AttemptPhase.FAILED, error, False
        if self._closing:
            message = "the engine stopped while the run was running"
            error = system_error("EngineStopped", message, self.worker)
        elif code is None and not outcome:
            message = f"the worker {attempt.worker} stopped, and the run's process with it"
            error = system_error("WorkerLost", message, self.worker, log_tail(folder / "run.log"))
        else:
            default = "ProcessKilled" if code is not None and code < 0 else "ProcessFailed"
            error = system_error(
                str(outcome.get("code") or default),
                str(outcome.get("message") or exit_reason(code)),
                self.worker,
                outcome.get("traceback") or log_tail(folder / "run.log"),
            )
        died = not outcome and not self._closing
        if died and failed[ErrorKind.SYSTEM] < self._settings.system_retries:
            return WorkflowPhase.RUNNING, AttemptPhase.RETRYABLE_FAILED, error, True
        return WorkflowPhase.FAILED, AttemptPhase.FAILED, error, False

    async def _pause(
        self, run: RunRecord, seconds: float, deadline: float | None
    ) -> tuple[WorkflowPhase, RunError | None] | None:
        """Wait before a retry; the run's end instead if it is aborted or times out."""
        wake = _now() + seconds
        while _now() < wake:
            if run.name in self._aborted:
                return WorkflowPhase.ABORTED, None
            if self._closing:
                message = "the engine stopped while the run waited to be retried"
                return WorkflowPhase.FAILED, system_error("EngineStopped", message, self.worker)
            if deadline is not None and _now() >= deadline:
                return WorkflowPhase.TIMED_OUT, self._timeout(run)
            await asyncio.sleep(min(_ABORT_POLL, max(0.0, wake - _now())))
        return None

    def _timeout(self, run: RunRecord) -> RunError:
        message = f"the run took longer than its timeout of {run.timeout_seconds:g}s"
        return run_error("Timeout", ErrorKind.USER, message, self.worker)

    async def _watch_aborts(self) -> None:
        """Stop the processes of runs that someone moved to ABORTING (`tripwire runs abort`)."""
        while not self._closing:
            await asyncio.sleep(_ABORT_POLL)
            if not self._active:
                continue
            try:
                aborting = await self._store.list_runs(phase=WorkflowPhase.ABORTING, limit=10_000)
            except Exception:
                log_failure(log, "looking for aborted runs failed")
                continue
            for run in aborting:
                mine = self._active.get(run.name)
                if mine is None or mine.key != run.key or run.name in self._aborted:
                    continue
                self._aborted.add(run.name)
                log.info("run %s: aborting (%s)", run.name, run.abort_cause)
                pid = self._running.get(run.name)
                if pid is not None:
                    task = asyncio.create_task(stop_group(pid))
                    self._watchers.add(task)
                    task.add_done_callback(self._watchers.discard)

    async def _spawn(
        self, run: RunRecord, folder: Path, gate: Gate
    ) -> asyncio.subprocess.Process | WarmProcess:
        """Start the run's process, which waits at ``gate``: forked from its flow's zygote
        with ``TRIPWIRE_RUN_START=fork`` (sensors.launchers.zygotes), else a new
        interpreter. It joins the run's trace (``TRACEPARENT``), and no other."""
        context, result = prepare(run, folder)
        env = {
            **{name: value for name, value in os.environ.items() if name not in CARRIER},
            **trace_env(run),
            "TRIPWIRE_RUN_CONTEXT": str(context),
            "TRIPWIRE_HOME": str(self._settings.home.resolve()),
            "TRIPWIRE_PROJECT": run.project,
            "TRIPWIRE_DOMAIN": run.domain,
            # The store, for wait_for_event: the run reads its signals from there.
            "TRIPWIRE_DATABASE_URL": self._settings.store_url,
            "PYTHONUNBUFFERED": "1",
            GATE: str(gate.path),
        }
        if self._settings.kafka_bootstrap:
            # So that safe_publish() inside the flow reaches the same broker.
            env["TRIPWIRE_KAFKA_BOOTSTRAP"] = self._settings.kafka_bootstrap
        if self._zygotes is not None:  # local:// and command:// alike: both start warm
            warm = await self._zygotes.fork(
                run.entrypoint,
                run.flow_revision or 0,
                context=context,
                result=result,
                log=folder / "run.log",
                cwd=Path.cwd(),
                env=env,
            )
            if warm is not None:
                note_forked(warm.pid, folder)
                return warm
        with (folder / "run.log").open("ab") as out:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "triggers.run",
                "--context",
                str(context),
                "--result",
                str(result),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: abort stops all it started
            )

    async def _finish(
        self, run: RunRecord, phase: WorkflowPhase, error: RunError | None, launch: Any = None
    ) -> None:
        end_span(launch, phase, error)
        # What the last attempt reported about itself, e.g. the Metaflow run it made.
        outputs = read_result(run_dir(self._settings, run.name) / "result.json").get("outputs")
        await finish_run(
            self._store, run, phase, error, outputs if isinstance(outputs, dict) else None
        )

    def code_changed(self) -> None:
        """The flows' code changed on disk: the next runs start from it, warm starts too."""
        if self._zygotes is not None:
            self._zygotes.renew()

    async def close(self, timeout: float = 5.0) -> None:
        """Terminate runs still going (they end FAILED, SYSTEM) and wait for their watchers."""
        self._closing = True
        if self._zygotes is not None:
            await self._zygotes.close()
        for task in (self._abort_watch, self._adopter):
            if task is not None:
                task.cancel()
        for pid in list(self._running.values()):
            signal_group(pid, signal.SIGTERM)
        if self._watchers:
            _, pending = await asyncio.wait(set(self._watchers), timeout=timeout)
            for pid in list(self._running.values()):
                signal_group(pid, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=timeout)


class _Slot:
    """A run's slot of :class:`LocalLauncher`, released once (``held`` False: it had none,
    as an adopted run that was running already)."""

    def __init__(self, launcher: LocalLauncher, held: bool) -> None:
        self._launcher = launcher
        self._held = held

    def release(self) -> None:
        if self._held:
            self._held = False
            self._launcher.release()


_ABORT_POLL = 0.5  # seconds between looks for aborted runs
_START_RETRIES = 2  # times a run whose process could not start is tried again
_UNSTARTED = frozenset({"SpawnFailed", "NotStarted"})
"""The codes of attempts that ran none of the flow: no retries of the run's are spent."""
_ADOPT_EVERY = 10.0  # seconds between looks for runs of workers on this host that died


async def _adopted_end(pid: int, folder: Path) -> None:
    """Wait until an adopted run process is gone (its exit code cannot be known)."""
    if pid and is_run_process(pid, folder):
        await wait_pid(pid)


def _now() -> float:
    return asyncio.get_running_loop().time()
