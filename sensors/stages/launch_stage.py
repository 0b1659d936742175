"""The launcher stage: run requests in, runs out, each exactly once.

A request is admitted by the run service (inputs to the object store, the run
to the store) under its deterministic name; the
store's unique key turns a replayed or duplicated request into a no-op. The
run is then claimed (QUEUED -> RUNNING, a conditional update, naming this
worker) before it is started, so a request redelivered to another worker after a
rebalance cannot start it a second time; if this worker dies between the claim and
the run's first attempt, a launcher's ``adopt`` claims it again and starts it. A
run of a trigger at its ``rate_limit`` or ``max_concurrency`` stays QUEUED, and
:meth:`LaunchStage.tick` starts it once there is room (:mod:`sensors.runs.limits`).
A request whose events another run of its sensor consumed already (a stale worker's or an
older definition's decision) is refused by the store, logged, counted in ``fenced`` and
skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from sensors.launchers.attempts import worker_name
from sensors.launchers.base import Launcher
from sensors.runs import limits
from sensors.runs.limits import limited
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from sensors.stages.kafka import Batch
from triggers.errors import ConsumedError, IllegalTransitionError

__all__ = ["LaunchStage"]

log = logging.getLogger(__name__)

_LOOK_EVERY = 1.0  # seconds between looks at runs waiting for a limit


class LaunchStage:
    """Creates requested runs in the store and hands new ones to their launcher."""

    def __init__(
        self, store: RunStore, service: RunService, launcher_for: Callable[[str], Launcher]
    ) -> None:
        self._store = store
        self._service = service
        self._launcher_for = launcher_for
        self.created = 0
        self.duplicates = 0
        self.fenced = 0  # refused: another run of its sensor consumed its events
        self._last_look = 0.0
        self.worker = worker_name()

    async def handle(self, batch: Batch) -> None:
        requests: dict[str, NewRun] = {}
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
                if request.name in requests:
                    self.duplicates += 1
                requests[request.name] = request
        for request in requests.values():
            await self._create_and_launch(request)

    async def _create_and_launch(self, request: NewRun) -> None:
        try:
            run, created = await self._service.admit(request)
        except ConsumedError as exc:
            self.fenced += 1
            log.warning("skipped run request %s: %s", request.name, exc)
            return
        if created:
            self.created += 1
            log.info("run %s QUEUED (flow %s)", run.name, run.flow)
        else:
            self.duplicates += 1
        if run.phase != WorkflowPhase.QUEUED:
            return  # already started, by us before a crash or by another worker
        if not await self._start(run) and limited(run):
            log.info("run %s waits in QUEUED: trigger %s is at its limit", run.name, run.sensor_id)

    async def _start(self, run: RunRecord) -> bool:
        """Claim a QUEUED run and launch it; False if a limit or another worker came first."""
        if limited(run):
            claimed = await limits.claim(self._store, run, datetime.now(UTC), self.worker)
            if claimed is None:
                return False
        else:
            try:
                claimed = await self._store.transition(
                    run.project,
                    run.domain,
                    run.name,
                    WorkflowPhase.RUNNING,
                    expected=WorkflowPhase.QUEUED,
                    claimed_by=self.worker,
                )
            except IllegalTransitionError:
                return False  # another worker claimed it first
        await self._launcher_for(claimed.target).launch(claimed)
        return True

    async def tick(self) -> None:
        """Start the runs that waited for a limit, oldest first, once their trigger has room."""
        clock = time.monotonic()
        if clock - self._last_look < _LOOK_EVERY:
            return
        self._last_look = clock
        try:
            full: set[str | None] = set()
            for run in await limits.waiting(self._store):
                if run.sensor_id not in full and not await self._start(run):
                    full.add(run.sensor_id)  # keep its queue in order: none overtakes
        except Exception:
            log.exception("starting runs that waited for a limit failed; will try again")
