"""The launch stage: run requests in, runs out, each exactly once. Admission apart from
execution.

**Admission.** A request is admitted by the run service (inputs to the object store, the
run to the store as QUEUED) under its deterministic name; the store's unique key turns a
replayed or duplicated request into a no-op. That is all the consumer waits for, so a
fired run is QUEUED, and visible to `runs list`, the page and the API, within
milliseconds, whatever the launch capacity. A request whose events another run of its
sensor consumed already (a stale worker's or an older definition's decision) is refused
by the store, logged, counted in ``fenced`` and skipped.

**Execution.** A starter task of each worker starts QUEUED runs, oldest first, while their
launcher has a free slot (:meth:`~sensors.launchers.base.Launcher.reserve`) and their
trigger's ``rate_limit`` and ``max_concurrency`` allow (:mod:`sensors.runs.limits`). It
looks when runs were admitted here, when a slot frees, and every second (runs admitted by
other workers). A run is claimed (QUEUED -> RUNNING, a conditional update naming this
worker) before it is started, so of all the workers looking, one starts it; if this
worker dies between the claim and the run's first attempt, a launcher's ``adopt`` claims
it again and starts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from sensors.faults import crash_point
from sensors.launchers.attempts import worker_name
from sensors.launchers.base import Launcher, family_of
from sensors.runs import limits
from sensors.runs.batch import claim_runs
from sensors.runs.limits import Waiting
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.outages import log_failure
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.stages.kafka import Batch
from triggers import tracing
from triggers.errors import ConfigurationError, ConsumedError

__all__ = ["LaunchStage"]

log = logging.getLogger(__name__)

_LOOK_EVERY = 1.0  # seconds between looks for runs that other workers admitted
_LOOK_AT = 500  # the oldest QUEUED runs considered per look


class LaunchStage:
    """Admits requested runs to the store, and starts QUEUED runs as their launchers have
    room."""

    def __init__(
        self, store: RunStore, service: RunService, launcher_for: Callable[[str], Launcher]
    ) -> None:
        self._store = store
        self._service = service
        self._launcher_for = launcher_for
        self.created = 0
        self.duplicates = 0
        self.fenced = 0  # refused: another run of its sensor consumed its events
        self.started = 0
        self.worker = worker_name()
        self._wake = asyncio.Event()
        self._starter: asyncio.Task[None] | None = None
        self._watched: set[int] = set()  # launchers whose freed slots wake the starter

    async def handle(self, batch: Batch) -> None:
        """Admit a batch's requests as QUEUED runs; the starter starts them."""
        requests: dict[tuple[str, str, str], NewRun] = {}
        for tp, records in batch.items():
            for record in records:
                try:
                    request = NewRun.model_validate_json(record.value or b"")
                except ValidationError as exc:
                    log.error(
                        "skipped malformed run request %s[%d]@%d: %s",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        exc,
                    )
                    continue
                if request.key in requests:
                    self.duplicates += 1
                requests[request.key] = request
        if requests:
            began = time.time_ns() if tracing.spans else 0
            answers = await self._service.admit_many(list(requests.values()))
            for request, answer in zip(requests.values(), answers, strict=True):
                self._admitted(request, answer)
                if began and request.traceparent is not None:
                    _admission_span(request, answer, began)
        self._wake.set()

    def start(self) -> None:
        """Start the starter task: from now on, QUEUED runs start as launchers have room."""
        if self._starter is None or self._starter.done():
            self._starter = asyncio.create_task(self._keep_starting(), name="tripwire starter")

    async def close(self) -> None:
        """Stop starting runs (the worker stops); runs already started go on."""
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
            self._starter = None

    def _admitted(self, request: NewRun, answer: tuple[RunRecord, bool] | ConsumedError) -> None:
        if isinstance(answer, ConsumedError):
            self.fenced += 1
            log.warning("run %s not created: %s", request.name, answer)
        elif answer[1]:
            self.created += 1
            log.info("run %s QUEUED (flow %s)", request.name, request.flow)
        else:
            self.duplicates += 1

    async def _keep_starting(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _LOOK_EVERY)
            self._wake.clear()
            try:
                # A full look that started runs: there may be more to start at once. One
                # that started none waits for a slot to free, not looks again at once.
                started = self.started
                while await self.start_queued() == _LOOK_AT and self.started > started:
                    started = self.started
            except Exception:
                log_failure(log, "starting queued runs failed; will look again")

    async def start_queued(self) -> int:
        """Start QUEUED runs, oldest first, while their launchers have room and their
        triggers' limits allow; return how many runs were looked at.

        A run that cannot start keeps its place: runs of the same launcher family, and
        of the same limited trigger, never overtake it.
        """
        queued = await limits.waiting(self._store, _LOOK_AT)
        full: set[str] = set()  # launcher families without a free slot
        at_limit: set[str | None] = set()  # limited triggers without room
        chosen: list[tuple[Waiting, Launcher]] = []  # to claim together: no limit applies
        for run in queued:
            if run.sensor_id in at_limit:
                continue
            try:
                family = family_of(run.target)
                launcher = self._launcher(run.target)
            except ConfigurationError as exc:
                log.error("run %s cannot start: %s", run.name, exc)
                continue
            if family in full:
                continue
            if not launcher.reserve():
                full.add(family)
                continue
            if not run.limited:
                chosen.append((run, launcher))
                continue
            one = await self._claim(run)
            if one is None:
                launcher.release()
                at_limit.add(run.sensor_id)
                continue
            await self._launch(one, launcher)
        claimed = await claim_runs(self._store, [run for run, _ in chosen], self.worker)
        launchers = {run.key: launcher for run, launcher in chosen}
        for record in claimed:
            await self._launch(record, launchers.pop(record.key))
        for launcher in launchers.values():
            launcher.release()  # another worker claimed its run first
        return len(queued)

    async def _launch(self, run: RunRecord, launcher: Launcher) -> None:
        crash_point("launch.claimed")
        try:
            await launcher.launch(run)
        except Exception:
            launcher.release()
            raise
        self.started += 1

    def _launcher(self, target: str) -> Launcher:
        launcher = self._launcher_for(target)
        if id(launcher) not in self._watched:
            self._watched.add(id(launcher))
            launcher.on_room(self._wake.set)
        return launcher

    async def _claim(self, run: Waiting) -> RunRecord | None:
        """Claim a QUEUED run of a limited trigger for this worker; None if the limit or
        another worker came first."""
        return await limits.claim(self._store, run, datetime.now(UTC), self.worker)


def _admission_span(
    request: NewRun, answer: tuple[RunRecord, bool] | ConsumedError, began: int
) -> None:
    """The span ``admit FLOW`` of a request's admission, begun at ``began`` (ns), in the
    trace of the request: created, a duplicate (the name exists), or refused."""
    if isinstance(answer, ConsumedError):
        outcome = "refused"
    else:
        outcome = "created" if answer[1] else "duplicate"
    span = tracing.span(
        f"admit {request.flow}",
        request.traceparent,
        tracestate=request.tracestate,
        attributes={
            "tripwire.run.name": request.name,
            "tripwire.flow": request.flow,
            "tripwire.sensor.id": request.sensor_id or "",
            "tripwire.project": request.project,
            "tripwire.domain": request.domain,
            "tripwire.admission": outcome,
            "tripwire.run.created": outcome == "created",
        },
        start_time=began,
    )
    span.end()
