"""``local://``: run each flow in its own Python process on this machine.

The run process is ``python -m triggers.run`` (see :mod:`triggers.run`). It
gets a context file (run name, parameters, events, entrypoint) and writes a
result file, which is how a flow's own exception (USER) is told apart from a
run that could not start or died (SYSTEM). Files live in
``$TRIPWIRE_HOME/runs/<run name>/``: ``context.json``, ``result.json``, ``run.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from sensors.runs.models import RunError, RunRecord
from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from triggers.errors import IllegalTransitionError
from triggers.settings import Settings

__all__ = ["LocalLauncher", "run_dir"]

log = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 2000


def run_dir(settings: Settings, name: str) -> Path:
    """The folder that holds a local run's context, result and log."""
    return (settings.home / "runs" / name).resolve()


class LocalLauncher:
    """Spawns run processes, at most ``settings.max_parallel_runs`` at a time."""

    def __init__(self, *, settings: Settings, store: RunStore) -> None:
        self._settings = settings
        self._store = store
        self._slots = asyncio.Semaphore(settings.max_parallel_runs)
        self._running: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._closing = False

    async def launch(self, run: RunRecord) -> None:
        # Waiting for a slot holds up the launcher's batch: back-pressure, not a queue.
        await self._slots.acquire()
        folder = run_dir(self._settings, run.name)
        try:
            process = await self._spawn(run, folder)
        except Exception as exc:
            self._slots.release()
            log.exception("run %s: could not start its process", run.name)
            await self._finish(
                run,
                WorkflowPhase.FAILED,
                RunError(
                    kind=ErrorKind.SYSTEM, message=f"could not start the run's process: {exc}"
                ),
            )
            return
        self._running[run.name] = process
        # Watch first: a run that started must reach a final phase even if recording
        # its pid fails below.
        task = asyncio.create_task(self._watch(run, process, folder), name=f"watch {run.name}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        try:
            await self._store.transition(
                run.project, run.domain, run.name, WorkflowPhase.RUNNING, pid=process.pid
            )
        except IllegalTransitionError:
            pass  # it already finished: the watcher was quicker
        except Exception:
            log.exception("run %s: could not record its pid %d", run.name, process.pid)

    async def _spawn(self, run: RunRecord, folder: Path) -> asyncio.subprocess.Process:
        context, result = _prepare(run, folder)
        env = {
            **os.environ,
            "TRIPWIRE_RUN_CONTEXT": str(context),
            "TRIPWIRE_HOME": str(self._settings.home.resolve()),
            "TRIPWIRE_PROJECT": run.project,
            "TRIPWIRE_DOMAIN": run.domain,
            "PYTHONUNBUFFERED": "1",
        }
        if self._settings.kafka_bootstrap:
            # So that safe_publish() inside the flow reaches the same broker.
            env["TRIPWIRE_KAFKA_BOOTSTRAP"] = self._settings.kafka_bootstrap
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
            )

    async def _watch(
        self, run: RunRecord, process: asyncio.subprocess.Process, folder: Path
    ) -> None:
        try:
            code = await process.wait()
        finally:
            self._running.pop(run.name, None)
            self._slots.release()
        outcome = _read_result(folder / "result.json")
        if code == 0 and outcome.get("ok"):
            await self._finish(run, WorkflowPhase.SUCCEEDED, None)
            return
        if outcome.get("kind") == ErrorKind.USER:
            error = RunError(
                kind=ErrorKind.USER,
                message=str(outcome.get("message") or "the flow raised"),
                traceback=outcome.get("traceback"),
            )
        elif self._closing:
            error = RunError(
                kind=ErrorKind.SYSTEM, message="the engine stopped while the run was running"
            )
        else:
            error = RunError(
                kind=ErrorKind.SYSTEM,
                message=str(outcome.get("message") or _exit_reason(code)),
                traceback=outcome.get("traceback") or _log_tail(folder / "run.log"),
            )
        await self._finish(run, WorkflowPhase.FAILED, error)

    async def _finish(self, run: RunRecord, phase: WorkflowPhase, error: RunError | None) -> None:
        try:
            await self._store.transition(run.project, run.domain, run.name, phase, error=error)
        except Exception:
            log.exception("run %s: could not record phase %s", run.name, phase)
        if error is None:
            log.info("run %s %s", run.name, phase)
        else:
            log.warning("run %s %s (%s): %s", run.name, phase, error.kind, error.message)

    async def close(self, timeout: float = 5.0) -> None:
        """Terminate runs still going (they end FAILED, SYSTEM) and wait for their watchers."""
        self._closing = True
        for process in list(self._running.values()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        if self._watchers:
            _, pending = await asyncio.wait(set(self._watchers), timeout=timeout)
            for process in list(self._running.values()):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            if pending:
                await asyncio.wait(pending, timeout=timeout)


def _prepare(run: RunRecord, folder: Path) -> tuple[Path, Path]:
    """Write the run's context file; return it and the result file's path.

    Blocking, but a few kilobytes on local disk: cheaper than a thread hop.
    """
    folder.mkdir(parents=True, exist_ok=True)
    context = folder / "context.json"
    result = folder / "result.json"
    result.unlink(missing_ok=True)
    context.write_text(json.dumps(_context(run)))
    return context, result


def _context(run: RunRecord) -> dict[str, Any]:
    return {
        "run_name": run.name,
        "project": run.project,
        "domain": run.domain,
        "flow": run.flow,
        "entrypoint": run.entrypoint,
        "parameters": run.parameters,
        "events": run.events,
    }


def _read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the run's process was killed by {name}"
    return f"the run's process exited with code {code} without reporting a result"


def _log_tail(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return None
