"""What every launcher does at the end of a run: build its error, record its phase."""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

from sensors.runs.models import RunError, RunRecord
from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.errors import IllegalTransitionError

__all__ = ["finish_run", "run_error", "system_error", "worker_name"]

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


async def finish_run(
    store: RunStore, run: RunRecord, phase: WorkflowPhase, error: RunError | None
) -> None:
    """Record a run's final phase; a run aborted meanwhile ends ABORTED. Never raises."""
    try:
        try:
            await store.transition(run.project, run.domain, run.name, phase, error=error)
        except IllegalTransitionError:
            # Aborted while it was ending: ABORTING can only end ABORTED.
            current = await store.get_run(run.name, project=run.project, domain=run.domain)
            if current.phase != WorkflowPhase.ABORTING:
                raise
            phase = WorkflowPhase.ABORTED
            await store.transition(run.project, run.domain, run.name, phase)
    except Exception:
        log.exception("run %s: could not record phase %s", run.name, phase)
    if error is None:
        log.info("run %s %s", run.name, phase)
    else:
        log.warning("run %s %s (%s): %s", run.name, phase, error.kind, error.message)
