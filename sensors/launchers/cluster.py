"""What launchers of runs in a Kubernetes cluster share: the API connection, attempts,
watching, abort and adoption.

A subclass creates one object per attempt (a Job, a Workflow) under a name
derived from the run name, so a replayed request finds it (409) instead of
creating a second one; reports what the object's status means
(:class:`Observation`); and stops it. This module turns that into attempt phases
(INITIALIZING, WAITING_FOR_RESOURCES, RUNNING, then a final one), retries of USER
failures as new attempts, ``runs abort`` and timeouts.

Whoever watches an attempt renews a lease on it (the attempt's ``updated_at``)
at every look. A worker that starts, or any watching worker once a minute, takes
over attempts whose lease is older than ten looks: a worker died, and its
objects, which outlive it, are watched again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sensors.launchers.attempts import (
    abandoned_retries,
    backoff_left,
    begin_attempt,
    end_attempt,
    finish_run,
    keep_adopting,
    live_runs,
    reclaim,
    run_error,
    system_error,
    take_over,
    worker_name,
)
from sensors.launchers.base import Unbounded
from sensors.runs import history as runs_history
from sensors.runs.models import Attempt, RunError, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.errors import ClaimLostError, ConfigurationError
from triggers.settings import Settings

__all__ = ["Observation", "ClusterLauncher", "attempt_name", "kube_client"]

log = logging.getLogger(__name__)

_SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_STALE_LOOKS = 10  # an attempt unwatched for this many looks is taken over
_UNREADABLE_LOOKS = 30  # looks in a row that fail before the run fails (SYSTEM)


@dataclass(frozen=True)
class Observation:
    """What the target says of an attempt: a live phase, or a final one with its error and
    what the run reported about itself (``outputs``, where the target passes it on)."""

    phase: AttemptPhase
    error: RunError | None = None
    outputs: dict[str, Any] | None = None


def kube_client(api_url: str | None) -> Any:
    """An ApiClient of the official client's asyncio API: ``api_url``, else in-cluster.

    Raises:
        ConfigurationError: the client is not installed, or there is no cluster to talk to.
    """
    try:
        from kubernetes.aio import client
    except ImportError:
        raise ConfigurationError(
            "k8s:// and argo:// targets need the kubernetes client: pip install 'tripwire[k8s]'"
        ) from None
    config = client.Configuration()
    if api_url:
        config.host = api_url.rstrip("/")
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        config.host = f"https://{host}:{port}"
        with open(f"{_SERVICE_ACCOUNT}/token") as token:
            config.api_key = {"BearerToken": token.read().strip()}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        config.ssl_ca_cert = f"{_SERVICE_ACCOUNT}/ca.crt"
    else:
        raise ConfigurationError(
            "no Kubernetes API to run k8s:// or argo:// targets on: run the worker in the "
            "cluster, or set TRIPWIRE_KUBE_API_URL."
        )
    return client.ApiClient(config)


def attempt_name(run: RunRecord, number: int) -> str:
    """The object of an attempt: the run's name, then ``-a2``, ``-a3``... (at most 63 chars)."""
    return run.name if number == 1 else f"{run.name[:58]}-a{number}"


class ClusterLauncher(Unbounded, ABC):
    """Runs attempts as objects in a cluster; subclasses say how to create, read and stop them."""

    family = "remote"

    def __init__(self, *, settings: Settings, store: RunStore) -> None:
        self._settings = settings
        self._store = store
        self._poll = settings.kube_poll_interval
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: set[str] = set()
        self._adopter: asyncio.Task[None] | None = None
        self._api: Any = None
        self.worker = worker_name()

    # what a subclass provides

    @abstractmethod
    async def create(self, run: RunRecord, name: str) -> None:
        """Create the attempt's object; one that exists already is fine."""

    @abstractmethod
    async def observe(self, run: RunRecord, name: str) -> Observation:
        """What the attempt's object says now."""

    @abstractmethod
    async def stop(self, run: RunRecord, name: str) -> None:
        """Stop the attempt's object and what it started."""

    def api_client(self) -> Any:
        """The connection to the cluster's API (made on first use, so that a worker with no
        cluster runs every other target)."""
        if self._api is None:
            self._api = kube_client(self._settings.kube_api_url)
        return self._api

    def failed(self, code: str, message: str, kind: ErrorKind = ErrorKind.SYSTEM) -> Observation:
        """An attempt that ended FAILED, with its error."""
        return Observation(AttemptPhase.FAILED, run_error(code, kind, message, self.worker))

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
        """Stop watching; the objects go on in the cluster, and a worker takes them over."""
        if self._adopter is not None:
            self._adopter.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._api is not None:
            await self._api.close()

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
        try:
            await asyncio.sleep(after)  # a retry taken over from a worker that died waits on
            while True:
                if adopted is None:
                    adopted = await begin_attempt(
                        self._store, run, self.worker, phase=AttemptPhase.INITIALIZING
                    )
                attempt, adopted = adopted, None
                name = attempt_name(run, attempt.number)
                if attempt.phase == AttemptPhase.INITIALIZING:
                    await self.create(run, name)
                ended = await self._follow(run, attempt, name)
                if ended is None:
                    phase = WorkflowPhase.RUNNING  # another worker watches it now
                    return
                retry = (
                    ended.error is not None
                    and ended.error.kind == ErrorKind.USER
                    and ended.phase == AttemptPhase.FAILED
                    and attempt.number <= run.retries
                )
                done = AttemptPhase.RETRYABLE_FAILED if retry else ended.phase
                await end_attempt(self._store, run, attempt.number, done, ended.error)
                phase, error = _run_phase(ended)
                outputs = ended.outputs
                if not retry:
                    return
                await asyncio.sleep(run.retry_backoff_seconds * 2 ** (attempt.number - 1))
        except asyncio.CancelledError:
            phase = WorkflowPhase.RUNNING  # the worker stops: another one takes it over
            raise
        except ClaimLostError as exc:
            log.error("run %s: not created from here: %s", run.name, exc)
            phase = WorkflowPhase.RUNNING  # another worker's now: left as it is
        except Exception as exc:
            log.exception("run %s: the launcher failed", run.name)
            error = system_error("LauncherFailed", f"the launcher failed: {exc}", self.worker)
        finally:
            if phase != WorkflowPhase.RUNNING:
                await asyncio.shield(finish_run(self._store, run, phase, error, outputs))

    async def _follow(self, run: RunRecord, attempt: Attempt, name: str) -> Observation | None:
        """Watch an attempt's object until it ends, the run is aborted, or it times out;
        None if another worker took the attempt over."""
        current, failures = attempt.phase, 0
        started = run.started_at or datetime.now(UTC)
        while True:
            record = await self._store.get_run(run.name, project=run.project, domain=run.domain)
            if record.phase == WorkflowPhase.ABORTING:
                await self.stop(run, name)
                return Observation(AttemptPhase.ABORTED)
            if (
                run.timeout_seconds
                and (datetime.now(UTC) - started).total_seconds() >= run.timeout_seconds
            ):
                await self.stop(run, name)
                message = f"the run took longer than its timeout of {run.timeout_seconds:g}s"
                return Observation(
                    AttemptPhase.FAILED, run_error("Timeout", ErrorKind.USER, message, self.worker)
                )
            try:
                seen = await self.observe(run, name)
                failures = 0
            except Exception as exc:
                failures += 1
                if failures >= _UNREADABLE_LOOKS:
                    message = f"cannot read {name} from {run.target} any more: {exc}"
                    return self.failed("TargetUnreachable", message)
                log.warning("run %s: cannot read %s (%s); will look again", run.name, name, exc)
                await asyncio.sleep(self._poll)
                continue
            if seen.phase in (AttemptPhase.SUCCEEDED, AttemptPhase.FAILED, AttemptPhase.ABORTED):
                return seen
            if seen.phase != current:
                await runs_history.move_attempt(self._store, *run.key, attempt.number, seen.phase)
                current = seen.phase
            elif not await runs_history.heartbeat(
                self._store, *run.key, attempt.number, self.worker
            ):
                return None
            await asyncio.sleep(self._poll)


def _run_phase(ended: Observation) -> tuple[WorkflowPhase, RunError | None]:
    if ended.phase == AttemptPhase.SUCCEEDED:
        return WorkflowPhase.SUCCEEDED, None
    if ended.phase == AttemptPhase.ABORTED:
        return WorkflowPhase.ABORTED, None
    if ended.error is not None and ended.error.code == "Timeout":
        return WorkflowPhase.TIMED_OUT, ended.error
    return WorkflowPhase.FAILED, ended.error
