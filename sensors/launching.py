"""The launcher stage: run requests in, runs out, each exactly once.

A request is admitted by the run service (inputs to the object store, the run
to the store) under its deterministic name; the
store's unique key turns a replayed or duplicated request into a no-op. The
run is then claimed (QUEUED -> RUNNING, a conditional update) before it is
started, so a request redelivered to another worker after a rebalance cannot
start it a second time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pydantic import ValidationError

from sensors.kafka import Batch
from sensors.launchers import Launcher
from sensors.runs.models import NewRun
from sensors.runs.phases import WorkflowPhase
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from triggers.errors import IllegalTransitionError

__all__ = ["LaunchStage"]

log = logging.getLogger(__name__)


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
        run, created = await self._service.admit(request)
        if created:
            self.created += 1
            log.info("run %s QUEUED (flow %s)", run.name, run.flow)
        else:
            self.duplicates += 1
        if run.phase != WorkflowPhase.QUEUED:
            return  # already started, by us before a crash or by another worker
        try:
            claimed = await self._store.transition(
                run.project,
                run.domain,
                run.name,
                WorkflowPhase.RUNNING,
                expected=WorkflowPhase.QUEUED,
            )
        except IllegalTransitionError:
            return  # another worker claimed it first
        await self._launcher_for(claimed.target).launch(claimed)
