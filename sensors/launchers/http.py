"""``http(s)://``: a run is one call to a web hook, retried until it answers.

The body is the target's JSON template filled with the run's values
(:mod:`triggers.targets`), sent with ``Idempotency-Key: <run name>`` so that a
receiver can drop the repeats that retries and worker restarts may cause, and
signed with HMAC-SHA256 when the target names a key. The status code decides:
one of ``success`` is SUCCEEDED; 5xx, 429 and connection errors are retried
with exponential backoff and jitter (or after ``Retry-After``) and end FAILED
(SYSTEM) when the retries run out; any other code is the receiver refusing the
run: FAILED (USER), retried as a new attempt while the run has ``retries``.
Every try is written to the run's log, ``$TRIPWIRE_HOME/runs/<name>/run.log``.
A worker that dies during a call loses its lease on the attempt; another one
calls again as a new attempt (same Idempotency-Key).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import random
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

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
    system_error,
    take_over,
    worker_name,
)
from sensors.launchers.base import Unbounded, template_values
from sensors.launchers.process import run_dir
from sensors.launchers.spans import (
    attempt_span,
    end_span,
    in_attempt,
    launch_span,
    trace_headers,
)
from sensors.runs import history as runs_history
from sensors.runs.models import RunError, RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.error_text import exception_text
from triggers.errors import ClaimLostError
from triggers.settings import Settings
from triggers.targets import CONTEXT_FIELDS, HttpTarget, TargetSpec, render

__all__ = ["SIGNATURE_HEADER", "HttpLauncher", "sign"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Tripwire-Signature"
_ABORT_POLL = 0.5  # seconds between looks at the run's phase while waiting
_LEASE = 3.0  # seconds between renewals of a call's lease; ten missed ones: taken over


def sign(key: bytes, body: bytes) -> str:
    """The signature header value of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


class _Ended(Exception):
    """The run ended while a call or a wait was under way (aborted or timed out)."""

    def __init__(self, phase: WorkflowPhase, error: RunError | None) -> None:
        self.phase, self.error = phase, error


class HttpLauncher(Unbounded):
    """Calls each run's web hook; many runs at once (calls wait on the network, not the CPU)."""

    def __init__(self, *, settings: Settings, store: RunStore) -> None:
        self._settings = settings
        self._store = store
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()
        self._attempts: dict[str, tuple[int, float]] = {}  # run -> (attempt, last lease renewal)
        self._adopter: asyncio.Task[None] | None = None
        self.worker = worker_name()

    async def launch(self, run: RunRecord) -> None:
        self._call_later(run, 0.0)

    def _call_later(self, run: RunRecord, after: float) -> None:
        """Run ``run``'s calls from a new attempt, ``after`` seconds from now."""
        task = asyncio.create_task(self._execute(run, after), name=f"run {run.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def adopt(self) -> list[str]:
        """Call again for the runs whose worker died during their call (its lease, renewed
        while it calls or waits, went stale): as a new attempt, with the same
        Idempotency-Key, so a receiver that got the first call can drop the second."""
        if self._adopter is None:
            self._adopter = asyncio.create_task(keep_adopting(self.adopt), name="adopt calls")
        stale = datetime.now(UTC) - timedelta(seconds=_LEASE * 10)
        live = await live_runs(self._store)
        taken = await take_over(self._store, live, "http", stale, self.worker, set(self._attempts))
        for run, attempt in taken:
            message = f"the worker {attempt.worker} stopped during the call; calling again"
            await runs_history.finish_attempt(
                self._store,
                *run.key,
                attempt.number,
                AttemptPhase.FAILED,
                system_error("WorkerLost", message, self.worker),
            )
            await self.launch(run)
        claimed = await reclaim(self._store, live, "http", stale, self.worker)
        for run in claimed:
            await self.launch(run)
        retried = await abandoned_retries(self._store, live, "http", self.worker)
        for run, attempt in retried:
            self._call_later(run, backoff_left(run, attempt))
        taken_over = [run.name for run, _ in taken] + [run.name for run, _ in retried]
        return taken_over + [run.name for run in claimed]

    async def close(self) -> None:
        await cancel_watchers(self._adopter, self._tasks)
        await self._client.aclose()

    async def _execute(self, run: RunRecord, after: float = 0.0) -> None:
        await asyncio.sleep(after)  # a retry taken over from a worker that died waits on
        options = TargetSpec(url=run.target, options=run.target_options or {}).model()
        assert isinstance(options, HttpTarget)
        started = run.started_at or datetime.now(UTC)
        deadline = started.timestamp() + run.timeout_seconds if run.timeout_seconds else None
        log_path = run_dir(self._settings, run.name) / "run.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        phase: WorkflowPhase | None = WorkflowPhase.FAILED
        error: RunError | None = None
        launch, span = launch_span(run, self.worker), None
        try:
            for number in range(1, run.retries + 2):
                span = attempt_span(run, launch, self.worker)
                attempt = await begin_attempt(self._store, run, self.worker, span=span)
                self._attempts[run.name] = (attempt.number, time.monotonic())
                try:
                    phase, error = await self._call(
                        in_attempt(run, span), options, log_path, deadline
                    )
                except _Ended as ended:
                    await end_attempt(
                        self._store, run, attempt.number, _attempt_phase(ended.phase), None, span
                    )
                    phase, error = ended.phase, ended.error
                    return
                retry = error is not None and error.kind == ErrorKind.USER and number <= run.retries
                done = AttemptPhase.RETRYABLE_FAILED if retry else _attempt_phase(phase)
                await end_attempt(self._store, run, attempt.number, done, error, span)
                if not retry:
                    return
                try:
                    await self._wait(run, run.retry_backoff_seconds * 2 ** (number - 1), deadline)
                except _Ended as ended:
                    phase, error = ended.phase, ended.error
                    return
        except asyncio.CancelledError:
            phase = WorkflowPhase.FAILED
            error = system_error("EngineStopped", "the engine stopped during the call", self.worker)
            raise
        except ClaimLostError as exc:
            log.error("run %s: not called from here: %s", run.name, exc)
            phase = None  # the run is another worker's now
        except Exception as exc:
            log.exception("run %s: the launcher failed", run.name)
            phase = WorkflowPhase.FAILED
            error = system_error("LauncherFailed", f"the launcher failed: {exc}", self.worker)
        finally:
            end_span(span)  # an attempt cut short (the worker stops): no phase
            end_span(launch, phase, error)
            self._attempts.pop(run.name, None)
            if phase is not None:
                await asyncio.shield(finish_run(self._store, run, phase, error))

    async def _call(
        self, run: RunRecord, options: HttpTarget, log_path: Path, deadline: float | None
    ) -> tuple[WorkflowPhase, RunError | None]:
        """One attempt: send the request, retrying what is worth retrying."""
        values = template_values(run)
        body = render(options.body, values, typed=True) if options.body is not None else None
        if body is None:
            body = {name: values[name] for name in CONTEXT_FIELDS}
        content = json.dumps(body, default=str).encode()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": run.name,
            **trace_headers(run),  # the receiver joins the run's trace
            **render(options.headers, values, typed=False),
        }
        if options.hmac_secret_env:
            key = os.environ.get(options.hmac_secret_env)
            if not key:
                message = (
                    f"the target signs with the key in ${options.hmac_secret_env}, which is not "
                    "set on this worker; set it, then `tripwire runs recover` the run"
                )
                return WorkflowPhase.FAILED, system_error("SecretMissing", message, self.worker)
            headers[SIGNATURE_HEADER] = sign(key.encode(), content)
        last = ""
        for tried in range(options.retries + 1):
            request = self._client.request(
                options.method,
                run.target,
                content=content,
                headers=headers,
                timeout=options.timeout.total_seconds(),
            )
            try:
                response = await self._until_ended(run, request, deadline)
            except httpx.HTTPError as exc:
                last = exception_text(exc)
                wait = _backoff(options, tried)
            else:
                status, text = response.status_code, response.text[:500]
                _note(log_path, f"{options.method} {run.target} -> {status} {text!r}")
                if status in options.success:
                    return WorkflowPhase.SUCCEEDED, None
                if status != 429 and status < 500:
                    message = f"{options.method} {run.target} answered {status}: {text}"
                    return WorkflowPhase.FAILED, run_error(
                        f"HTTP{status}", ErrorKind.USER, message, self.worker
                    )
                last = f"{status} {text}"
                wait = _retry_after(response) or _backoff(options, tried)
            if tried < options.retries:
                _note(log_path, f"try {tried + 1} failed ({last}); next in {wait:.1f}s")
                await self._wait(run, wait, deadline)
        message = (
            f"{options.method} {run.target} failed {options.retries + 1} time(s); last: {last}"
        )
        _note(log_path, message)
        return WorkflowPhase.FAILED, system_error("HttpUnavailable", message, self.worker)

    async def _until_ended(
        self,
        run: RunRecord,
        request: Coroutine[Any, Any, httpx.Response],
        deadline: float | None,
    ) -> httpx.Response:
        """Await a request, unless the run is aborted or times out first."""
        call = asyncio.ensure_future(request)
        try:
            while True:
                done, _ = await asyncio.wait({call}, timeout=_ABORT_POLL)
                if done:
                    return call.result()
                await self._check(run, deadline)
        finally:
            call.cancel()

    async def _wait(self, run: RunRecord, seconds: float, deadline: float | None) -> None:
        """Sleep ``seconds``, unless the run is aborted or times out first."""
        loop = asyncio.get_running_loop()
        wake = loop.time() + seconds
        while (left := wake - loop.time()) > 0:
            await self._check(run, deadline)
            await asyncio.sleep(min(_ABORT_POLL, left))
        await self._check(run, deadline)

    async def _check(self, run: RunRecord, deadline: float | None) -> None:
        number, renewed = self._attempts.get(run.name, (0, 0.0))
        if number and time.monotonic() - renewed >= _LEASE:
            await runs_history.heartbeat(self._store, *run.key, number, self.worker)
            self._attempts[run.name] = (number, time.monotonic())
        if deadline is not None and datetime.now(UTC).timestamp() >= deadline:
            message = f"the run took longer than its timeout of {run.timeout_seconds:g}s"
            raise _Ended(
                WorkflowPhase.TIMED_OUT, run_error("Timeout", ErrorKind.USER, message, self.worker)
            )
        current = await self._store.get_run(run.name, project=run.project, domain=run.domain)
        if current.phase == WorkflowPhase.ABORTING:
            raise _Ended(WorkflowPhase.ABORTED, None)


def _attempt_phase(phase: WorkflowPhase) -> AttemptPhase:
    return {
        WorkflowPhase.SUCCEEDED: AttemptPhase.SUCCEEDED,
        WorkflowPhase.ABORTED: AttemptPhase.ABORTED,
    }.get(phase, AttemptPhase.FAILED)


def _backoff(options: HttpTarget, tried: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(options.max_backoff.total_seconds(), options.backoff.total_seconds() * 2**tried)
    return random.uniform(ceiling / 2, ceiling)


def _retry_after(response: httpx.Response) -> float | None:
    """The server's Retry-After, in seconds (a number or an HTTP date), if it sent one."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _note(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}\n")
