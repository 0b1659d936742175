"""What every launcher of runs on a remote system shares: attempts, leases, takeover,
retries, timeouts, abort and links.

A remote system (a Kubernetes cluster, Argo, Prefect, Airflow, Dagster, Flyte) runs
the flow; tripwire starts one remote run per attempt and follows it. A subclass
says how to create the remote run of an attempt, under a name derived from the
tripwire run's (:func:`attempt_name`), so that a replayed create finds the one
that exists instead of starting a second; what its status means
(:class:`Observation`); and how to stop it. :class:`RemoteLauncher` turns that
into attempt phases (INITIALIZING, WAITING_FOR_RESOURCES, RUNNING, then a final
one), retries as new attempts (USER failures while the run has ``retries``,
SYSTEM ones while ``TRIPWIRE_SYSTEM_RETRIES`` allows), ``runs abort``, timeouts,
and the link to each remote run that ``runs get`` shows.

Whoever watches an attempt renews a lease on it (the attempt's ``updated_at``) at
every look. A worker that starts, or any watching worker once a minute, takes over
attempts whose lease is older than ten looks: a worker died, and its remote runs,
which outlive it, are watched again.

A subclass raises :class:`Refused` for what the system refuses for good, and
anything else (:class:`Unreachable`, its client's errors) for what may pass;
:mod:`sensors.launchers.remote_http` does that sorting for HTTP APIs.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sensors.launchers.attempts import (
    abandoned_retries,
    backoff_left,
    begin_attempt,
    cancel_watchers,
    end_attempt,
    finish_run,
    keep_adopting,
    live_runs,
    reclaim,
    run_error,
    take_over,
    worker_name,
)
from sensors.launchers.base import Unbounded
from sensors.launchers.spans import attempt_span, end_span, in_attempt, launch_span
from sensors.runs import history as runs_history
from sensors.runs.models import Attempt, RunError, RunRecord
from sensors.runs.outages import persistently
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.errors import ClaimLostError, ConfigurationError
from triggers.settings import Settings

__all__ = [
    "Observation",
    "Refused",
    "RemoteLauncher",
    "Unreachable",
    "attempt_name",
]

log = logging.getLogger(__name__)

_STALE_LOOKS = 10  # an attempt unwatched for this many looks is taken over
_UNREADABLE_LOOKS = 30  # looks in a row that fail before the attempt fails (SYSTEM)
_FINAL = (AttemptPhase.SUCCEEDED, AttemptPhase.FAILED, AttemptPhase.ABORTED)


@dataclass(frozen=True)
class Observation:
    """What the target says of an attempt: a live phase, or a final one with its error and
    what the run reported about itself (``outputs``, where the target passes it on).

    ``link`` is where a person sees the remote run (its page in the system's UI).
    ``retryable`` False keeps a failure from being retried as a new attempt: one that
    would fail the same way, or whose remote run may still be going.
    """

    phase: AttemptPhase
    error: RunError | None = None
    outputs: dict[str, Any] | None = None
    link: str | None = None
    retryable: bool = True


class Refused(Exception):
    """The remote system refused for good (an unknown job, bad credentials, a request it
    rejects): the attempt fails SYSTEM at once, and is not retried."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class Unreachable(Exception):
    """The remote system did not answer, or answered that it cannot now (5xx, 429): the
    launcher asks again at its next look."""


def attempt_name(run: RunRecord, number: int) -> str:
    """The remote run of an attempt: the run's name, then ``-a2``, ``-a3``... (at most 63
    chars, a Kubernetes name)."""
    return run.name if number == 1 else f"{run.name[:58]}-a{number}"


class RemoteLauncher(Unbounded, ABC):
    """Runs attempts as remote runs; subclasses say how to create, read and stop them."""

    family = "remote"

    def __init__(self, *, settings: Settings, store: RunStore) -> None:
        self._settings = settings
        self._store = store
        self._poll = self.poll_interval()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()
        self._adopter: asyncio.Task[None] | None = None
        self.worker = worker_name()

    # what a subclass provides

    @abstractmethod
    async def create(self, run: RunRecord, name: str) -> str | None:
        """Start the remote run of the attempt called ``name``; one that exists already is
        fine (a replay finds it). Return its link, if the system has one."""

    @abstractmethod
    async def observe(self, run: RunRecord, name: str) -> Observation:
        """What the remote run of the attempt called ``name`` says now."""

    @abstractmethod
    async def stop(self, run: RunRecord, name: str) -> None:
        """Stop the remote run and what it started; one that ended or is gone is fine."""

    async def disconnect(self) -> None:
        """Close what talks to the system (called once, when the worker stops)."""

    def poll_interval(self) -> float:
        """Seconds between looks at a remote run."""
        return self._settings.remote_poll_interval

    def refusal(self, exc: Exception) -> Refused | None:
        """``exc``, raised by the system's client, as a refusal for good; None when asking
        again may help. A subclass whose client raises its own errors sorts them here."""
        return None

    def failed(
        self,
        code: str,
        message: str,
        kind: ErrorKind = ErrorKind.SYSTEM,
        *,
        retryable: bool = True,
    ) -> Observation:
        """An attempt that ended FAILED, with its error."""
        error = run_error(code, kind, message, self.worker)
        return Observation(AttemptPhase.FAILED, error, retryable=retryable)

    # the Launcher protocol

    async def launch(self, run: RunRecord) -> None:
        self._watch(run, None)

    async def adopt(self) -> list[str]:
        """Watch the attempts of this family that no live worker watches; return their runs."""
        if self._adopter is None:
            self._adopter = asyncio.create_task(keep_adopting(self.adopt), name="adopt")
        stale = datetime.now(UTC) - timedelta(seconds=self._poll * _STALE_LOOKS)
        live = await live_runs(self._store)
        taken = await take_over(self._store, live, self.family, stale, self.worker, self._watched)
        for run, attempt in taken:
            self._watch(run, attempt)
        claimed = await reclaim(self._store, live, self.family, stale, self.worker)
        for run in claimed:
            self._watch(run, None)
        retried = await abandoned_retries(self._store, live, self.family, self.worker)
        for run, attempt in retried:
            self._watch(run, None, after=backoff_left(run, attempt))
        taken_over = [run.name for run, _ in taken] + [run.name for run, _ in retried]
        return taken_over + [run.name for run in claimed]

    async def close(self) -> None:
        """Stop watching; the remote runs go on, and a worker takes them over."""
        await cancel_watchers(self._adopter, self._tasks)
        await self.disconnect()

    # the attempt loop

    def _watch(self, run: RunRecord, adopted: Attempt | None, after: float = 0.0) -> None:
        """Run ``run`` to its end, from ``adopted`` or from a new attempt ``after`` seconds."""
        self._watched.add(run.name)
        task = asyncio.create_task(self._execute(run, adopted, after), name=f"run {run.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._watched.discard(run.name))

    async def _execute(self, run: RunRecord, adopted: Attempt | None, after: float = 0.0) -> None:
        phase, error, outputs = WorkflowPhase.FAILED, None, None
        launch, span = launch_span(run, self.worker), None
        try:
            await asyncio.sleep(after)  # a retry taken over from a worker that died waits on
            while True:
                span = attempt_span(run, launch, self.worker, adopted.number if adopted else None)
                if adopted is None:
                    adopted = await begin_attempt(
                        self._store, run, self.worker, phase=AttemptPhase.INITIALIZING, span=span
                    )
                attempt, adopted = adopted, None
                ended = await self._follow(in_attempt(run, span), attempt)
                if ended is None:
                    phase = WorkflowPhase.RUNNING  # another worker watches it now
                    return
                retry = ended.phase == AttemptPhase.FAILED and await self._retries(
                    run, attempt, ended
                )
                done = AttemptPhase.RETRYABLE_FAILED if retry else ended.phase
                await end_attempt(self._store, run, attempt.number, done, ended.error, span)
                phase, error = _run_phase(ended)
                outputs = ended.outputs
                if not retry:
                    return
                await asyncio.sleep(run.retry_backoff_seconds * 2 ** (attempt.number - 1))
        except asyncio.CancelledError:
            phase = WorkflowPhase.RUNNING  # the worker stops: another one takes it over
            raise
        except ClaimLostError as exc:
            log.error("run %s: not started from here: %s", run.name, exc)
            phase = WorkflowPhase.RUNNING  # another worker's now: left as it is
        except Exception as exc:
            log.exception("run %s: the launcher failed", run.name)
            error = run_error(
                "LauncherFailed", ErrorKind.SYSTEM, f"the launcher failed: {exc}", self.worker
            )
        finally:
            end_span(span)  # an attempt this worker stopped watching: no phase
            ending = phase != WorkflowPhase.RUNNING
            end_span(launch, phase if ending else None, error)
            if ending:
                await asyncio.shield(finish_run(self._store, run, phase, error, outputs))

    async def _retries(self, run: RunRecord, attempt: Attempt, ended: Observation) -> bool:
        """Whether a failed attempt is retried: a USER failure while the run's ``retries``
        allow, a SYSTEM one while ``TRIPWIRE_SYSTEM_RETRIES`` does, counted apart."""
        if ended.error is None or not ended.retryable:
            return False
        earlier = await persistently(
            f"run {run.name}: its attempts", runs_history.attempts, self._store, *run.key
        )
        kind = ended.error.kind
        failed = sum(
            1
            for a in earlier
            if a.number < attempt.number and a.error is not None and a.error.kind == kind
        )
        allowed = run.retries if kind == ErrorKind.USER else self._settings.system_retries
        return failed < allowed

    async def _follow(self, run: RunRecord, attempt: Attempt) -> Observation | None:
        """Start the attempt's remote run if it is new, then watch it until it ends, the run
        is aborted, or it times out; None if another worker took the attempt over."""
        name = attempt_name(run, attempt.number)
        created = attempt.phase != AttemptPhase.INITIALIZING or attempt.link is not None
        current, failures = attempt.phase, 0
        started = run.started_at or datetime.now(UTC)
        while True:
            record = await persistently(
                f"run {run.name}: its phase",
                self._store.get_run,
                run.name,
                project=run.project,
                domain=run.domain,
            )
            try:
                if record.phase == WorkflowPhase.ABORTING:
                    if created:
                        await self.stop(run, name)
                    return Observation(AttemptPhase.ABORTED)
                if run.timeout_seconds and _elapsed(started) >= run.timeout_seconds:
                    if created:
                        await self.stop(run, name)
                    message = f"the run took longer than its timeout of {run.timeout_seconds:g}s"
                    return self.failed("Timeout", message, ErrorKind.USER, retryable=False)
                if not created:
                    link = await self.create(run, name)
                    created = True
                    if link:
                        attempt = await self._link(run, attempt, name, link)
                seen = await self.observe(run, name)
                failures = 0
            except Exception as exc:
                refused = _refused(exc) or self.refusal(exc)
                if refused is not None:
                    message = f"{run.target} refused {name}: {refused.message}"
                    return self.failed(refused.code, message, retryable=False)
                failures += 1
                if failures >= _UNREADABLE_LOOKS:
                    message = f"cannot reach {run.target} for {name} any more: {exc}"
                    return self.failed("TargetUnreachable", message, retryable=False)
                log.warning("run %s: cannot reach %s (%s); will try again", run.name, name, exc)
                if not await self._renew(run, attempt):
                    return None
                await asyncio.sleep(self._poll)
                continue
            if seen.link and seen.link != attempt.link:
                attempt = await self._link(run, attempt, name, seen.link)
            if seen.phase in _FINAL:
                return seen
            if seen.phase != current:
                await persistently(
                    f"run {run.name}: recording phase {seen.phase}",
                    runs_history.move_attempt,
                    self._store,
                    *run.key,
                    attempt.number,
                    seen.phase,
                )
                current = seen.phase
            elif not await self._renew(run, attempt):
                return None
            await asyncio.sleep(self._poll)

    async def _renew(self, run: RunRecord, attempt: Attempt) -> bool:
        """Renew this worker's lease on the attempt, also while the target does not answer;
        False if another worker took the attempt over."""
        return await persistently(
            f"run {run.name}: renewing its lease",
            runs_history.heartbeat,
            self._store,
            *run.key,
            attempt.number,
            self.worker,
        )

    async def _link(self, run: RunRecord, attempt: Attempt, name: str, link: str) -> Attempt:
        """Record where the attempt's remote run can be seen; return the attempt with it."""
        await persistently(
            f"run {run.name}: recording its link",
            runs_history.link_attempt,
            self._store,
            *run.key,
            attempt.number,
            link,
        )
        log.info("run %s: attempt %d is %s, at %s", run.name, attempt.number, name, link)
        return attempt.model_copy(update={"link": link})


def _refused(exc: Exception) -> Refused | None:
    if isinstance(exc, Refused):
        return exc
    if isinstance(exc, ConfigurationError):
        return Refused("TargetMisconfigured", str(exc))
    return None


def _elapsed(since: datetime) -> float:
    return (datetime.now(UTC) - since).total_seconds()


def _run_phase(ended: Observation) -> tuple[WorkflowPhase, RunError | None]:
    if ended.phase == AttemptPhase.SUCCEEDED:
        return WorkflowPhase.SUCCEEDED, None
    if ended.phase == AttemptPhase.ABORTED:
        return WorkflowPhase.ABORTED, None
    if ended.error is not None and ended.error.code == "Timeout":
        return WorkflowPhase.TIMED_OUT, ended.error
    return WorkflowPhase.FAILED, ended.error
