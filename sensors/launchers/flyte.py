"""``flyte://[PROJECT/DOMAIN/]ENV.TASK``: each attempt of a run is a run of a Flyte 2 task.

The Flyte run's name is the attempt's (:func:`~sensors.launchers.remote.attempt_name`);
on a backend, which takes 30 characters, a longer one is shortened with a hash of it
(:func:`flyte_name`), the same for a replay. Its inputs are the run's parameters, or the
target's ``inputs`` template.

``mode="remote"`` (the default) starts it on the Flyte backend the worker's Flyte config
names (``flyte.init_from_config``: ``config``, else Flyte's own look-up), through the
``flyte`` SDK (``pip install 'tripwire[flyte]'``): the task is looked up by name
(``version``, else the latest), ``flyte.with_runcontext(mode="remote", name=...)`` runs
it, and a run of that name that exists already (a replay) is followed instead. Its phase
maps: queued and initializing -> INITIALIZING, waiting_for_resources ->
WAITING_FOR_RESOURCES, running and paused -> RUNNING, succeeded and recovered ->
SUCCEEDED, failed -> FAILED (USER unless Flyte says the system failed), timed_out ->
FAILED (SYSTEM), aborted -> ABORTED. Abort aborts the Flyte run. Every call to the SDK
goes through :class:`FlyteSdk`, the one place that knows its API.

``mode="local"`` runs the task in Flyte's local mode, in a process of its own on the
worker's machine (``python``, the target's interpreter with the SDK and the task's code,
else the worker's), which imports ``module`` and runs :mod:`sensors.launchers.flyte_task`.
Its result file is the outcome: an exception in the task is a USER failure; a process
that died without one a SYSTEM failure. Abort stops its process group. Its output is the
attempt's log, ``$TRIPWIRE_HOME/runs/<attempt>/run.log``, which ``runs logs`` links to.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from sensors.launchers.base import template_values
from sensors.launchers.process import (
    exit_reason,
    note_forked,
    noted_run_process,
    read_result,
    run_dir,
    stop_group,
)
from sensors.launchers.remote import Observation, Refused, RemoteLauncher
from sensors.runs.models import RunRecord
from sensors.runs.phases import AttemptPhase, ErrorKind
from triggers.errors import ConfigurationError
from triggers.targets import FlyteTarget, TargetSpec, render

__all__ = ["FlyteLauncher", "FlyteRun", "FlyteSdk", "RemoteFlyte", "flyte_name", "flyte_task"]

_CHILD = Path(__file__).with_name("flyte_task.py")
_REAP = 2.0  # seconds a stopping worker gives local runs that are ending to exit
_NAME_MAX = 30  # characters a Flyte run's name may have
_SYSTEM_ERROR = 2  # ErrorInfo.kind of a failure of the system, not the task
_PHASES = {
    "queued": AttemptPhase.INITIALIZING,
    "initializing": AttemptPhase.INITIALIZING,
    "waiting_for_resources": AttemptPhase.WAITING_FOR_RESOURCES,
    "running": AttemptPhase.RUNNING,
    "paused": AttemptPhase.RUNNING,  # waits for a condition: still the attempt running
    "succeeded": AttemptPhase.SUCCEEDED,
    "recovered": AttemptPhase.SUCCEEDED,
    "aborted": AttemptPhase.ABORTED,
}


def flyte_task(url: str) -> tuple[str | None, str | None, str]:
    """The project, domain (None: the Flyte config's) and ``ENV.TASK`` a target names."""
    parts = urlsplit(url)
    names = [unquote(p) for p in [parts.netloc, *parts.path.split("/")] if p]
    if len(names) == 3:
        return names[0], names[1], names[2]
    return None, None, names[-1]


def flyte_name(attempt: str) -> str:
    """The Flyte run of an attempt on a backend: its name where it fits Flyte's 30
    characters, else the first 9 of it and a hash of all of it (the same for a replay)."""
    if len(attempt) <= _NAME_MAX:
        return attempt
    return f"{attempt[:9].rstrip('-')}-{hashlib.sha256(attempt.encode()).hexdigest()[:20]}"


class FlyteRun(Protocol):
    """What the launcher reads of a Flyte run."""

    @property
    def phase(self) -> str:
        """An ActionPhase value: queued, running, succeeded, failed..."""

    @property
    def url(self) -> str | None: ...

    @property
    def error(self) -> str | None:
        """Why it failed, as Flyte says."""

    @property
    def system(self) -> bool:
        """Whether Flyte says the failure is the system's, not the task's."""


class RemoteFlyte(Protocol):
    """The calls the launcher makes of a Flyte backend (:class:`FlyteSdk` makes them)."""

    async def start(
        self,
        task: str,
        project: str | None,
        domain: str | None,
        name: str,
        inputs: dict[str, Any],
        version: str | None,
    ) -> str | None:
        """Run ``task`` as the run ``name``; a run of that name that exists is fine.
        Return the run's URL. Raises Refused for a task the backend does not have."""

    async def get(self, project: str | None, domain: str | None, name: str) -> FlyteRun:
        """The run ``name``."""

    async def abort(self, project: str | None, domain: str | None, name: str) -> None:
        """Abort the run ``name``; one that ended or is gone is fine."""


class FlyteLauncher(RemoteLauncher):
    """Runs a Flyte task per attempt, on a backend or in Flyte's local mode."""

    family = "flyte"

    def __init__(self, *, remote: RemoteFlyte | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._remote = remote
        self._children: dict[str, asyncio.Task[int]] = {}  # local: attempt -> its wait()
        self._pids: dict[str, int] = {}

    def _options(self, run: RunRecord) -> FlyteTarget:
        options = TargetSpec(url=run.target, options=run.target_options or {}).model()
        assert isinstance(options, FlyteTarget)
        return options

    def _backend(self, options: FlyteTarget) -> RemoteFlyte:
        if self._remote is None:
            self._remote = FlyteSdk(options.config)
        return self._remote

    async def create(self, run: RunRecord, name: str) -> str | None:
        options = self._options(run)
        values = template_values(run)
        inputs = (
            dict(run.parameters)
            if options.inputs is None
            else render(options.inputs, values, typed=True)
        )
        project, domain, task = flyte_task(run.target)
        if options.mode == "local":
            return await self._start_local(name, options, task, inputs)
        backend = self._backend(options)
        return await backend.start(task, project, domain, flyte_name(name), inputs, options.version)

    async def observe(self, run: RunRecord, name: str) -> Observation:
        options = self._options(run)
        if options.mode == "local":
            return self._observe_local(name)
        project, domain, _ = flyte_task(run.target)
        found = await self._backend(options).get(project, domain, flyte_name(name))
        phase = _PHASES.get(found.phase)
        if phase is not None:
            return Observation(phase, link=found.url)
        where = f"Flyte run {name} {found.phase}: {found.error or 'no reason given'}"
        if found.phase == "timed_out":
            return self.failed("FlyteTimedOut", where)
        if found.phase == "failed":
            kind = ErrorKind.SYSTEM if found.system else ErrorKind.USER
            return self.failed("FlyteRunFailed", where, kind)
        return Observation(AttemptPhase.RUNNING, link=found.url)  # a phase newer than this code

    async def stop(self, run: RunRecord, name: str) -> None:
        options = self._options(run)
        if options.mode == "local":
            await self._stop_local(name)
            return
        project, domain, _ = flyte_task(run.target)
        await self._backend(options).abort(project, domain, flyte_name(name))

    async def disconnect(self) -> None:
        if self._children:  # reap what is ending; the rest go on, unwatched
            await asyncio.wait(self._children.values(), timeout=_REAP)
        for waiting in self._children.values():
            waiting.cancel()

    # local mode: a process per attempt on this machine

    async def _start_local(
        self, name: str, options: FlyteTarget, task: str, inputs: dict[str, Any]
    ) -> str:
        folder = run_dir(self._settings, name)
        log = folder / "run.log"
        if (folder / "result.json").exists() or self._running(name):
            return log.as_uri()  # a replay: this attempt's process ran or runs
        assert options.module is not None  # FlyteTarget requires it in local mode
        folder.mkdir(parents=True, exist_ok=True)
        argv = [
            options.python or sys.executable,
            "-c",
            _CHILD.read_text(),
            task,
            options.module,
            name,
            json.dumps(inputs, default=str),
            str(folder / "result.json"),
        ]
        try:
            with log.open("ab") as out:
                child = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # abort stops its whole group
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
        except OSError as exc:
            raise Refused("PythonMissing", f"cannot start {argv[0]}: {exc}") from None
        note_forked(child.pid, folder)
        self._pids[name] = child.pid
        self._children[name] = asyncio.create_task(child.wait(), name=f"flyte {name}")
        return log.as_uri()

    def _running(self, name: str) -> bool:
        waiting = self._children.get(name)
        if waiting is not None:
            return not waiting.done()
        return noted_run_process(run_dir(self._settings, name)) is not None

    def _observe_local(self, name: str) -> Observation:
        folder = run_dir(self._settings, name)
        outcome = read_result(folder / "result.json")
        if outcome.get("phase") == "SUCCEEDED":
            return Observation(AttemptPhase.SUCCEEDED, outputs=outcome.get("outputs"))
        if outcome.get("phase") == "FAILED":
            kind = ErrorKind.USER if outcome.get("kind") == "USER" else ErrorKind.SYSTEM
            message = str(outcome.get("message") or "the task failed")
            code = str(outcome.get("code") or "FlyteTaskFailed")
            retryable = code not in ("FlyteMissing", "TaskNotFound", "FlyteInputs")
            return self.failed(code, message, kind, retryable=retryable)
        if self._running(name):
            return Observation(AttemptPhase.RUNNING)
        waiting = self._children.get(name)
        status = waiting.result() if waiting is not None and not waiting.cancelled() else None
        return self.failed("ProcessLost", f"Flyte local run {name}: {exit_reason(status)}")

    async def _stop_local(self, name: str) -> None:
        waiting = self._children.get(name)
        if waiting is not None:
            await stop_group(self._pids[name], waiting)
            return
        pid = noted_run_process(run_dir(self._settings, name))
        if pid is not None:
            await stop_group(pid)


class FlyteSdk:
    """:class:`RemoteFlyte` through the ``flyte`` SDK, against the backend of the worker's
    Flyte config (``init_from_config``, once per worker). Not run against a Flyte backend
    here (none runs on a test machine): its calls follow the SDK's API as of flyte 2.12,
    as seen against a stand-in of the control plane's Connect services."""

    def __init__(self, config: str | None) -> None:
        self._config = config
        self._init: Any = None  # the SDK's configuration, once initialised

    async def _flyte(self) -> Any:
        try:
            import flyte
            import flyte.remote
        except ImportError:
            raise ConfigurationError(
                "flyte:// targets in remote mode need the Flyte 2 SDK: pip install "
                "'tripwire[flyte]'"
            ) from None
        if self._init is None:
            from flyte._initialize import get_init_config

            await flyte.init_from_config.aio(self._config)
            self._init = get_init_config()
        return flyte

    def _scope(self, project: str | None, domain: str | None) -> tuple[str, str]:
        return project or self._init.project, domain or self._init.domain

    async def start(
        self,
        task: str,
        project: str | None,
        domain: str | None,
        name: str,
        inputs: dict[str, Any],
        version: str | None,
    ) -> str | None:
        flyte = await self._flyte()
        project, domain = self._scope(project, domain)
        lazy = flyte.remote.Task.get(
            task,
            project=project,
            domain=domain,
            version=version,
            auto_version=None if version else "latest",
        )
        runner = flyte.with_runcontext(mode="remote", name=name, project=project, domain=domain)
        try:
            started = await runner.run.aio(lazy, **inputs)
        except flyte.errors.RemoteTaskNotFoundError as exc:
            raise Refused(
                "TaskNotFound", f"the Flyte backend has no task {task!r}: {exc}"
            ) from None
        except flyte.errors.RuntimeUserError as exc:
            if getattr(exc, "code", None) == "RunAlreadyExistsError":
                return None  # a replay: the run of this attempt exists
            raise Refused(str(getattr(exc, "code", "FlyteRefused")), str(exc)) from None
        except TypeError as exc:  # inputs the task's interface does not take
            raise Refused("FlyteInputs", f"task {task!r}: {exc}") from None
        url: str | None = started.url
        return url

    async def _details(self, project: str | None, domain: str | None, name: str) -> Any:
        flyte = await self._flyte()
        from flyteidl2.common import identifier_pb2

        project, domain = self._scope(project, domain)
        run = identifier_pb2.RunIdentifier(
            org=self._init.org, project=project, domain=domain, name=name
        )
        return await flyte.remote.RunDetails.get_details.aio(run)

    async def get(self, project: str | None, domain: str | None, name: str) -> FlyteRun:
        details = await self._details(project, domain, name)
        action = details.action_details
        info = action.error_info
        return _SdkRun(
            phase=str(getattr(action.phase, "value", action.phase)).lower(),
            url=None,
            error=getattr(info, "message", None) or None,
            system=getattr(info, "kind", None) == _SYSTEM_ERROR,
        )

    async def abort(self, project: str | None, domain: str | None, name: str) -> None:
        flyte = await self._flyte()
        from flyteidl2.workflow import run_definition_pb2

        details = await self._details(project, domain, name)
        action = run_definition_pb2.Action(id=details.action_id)
        run = flyte.remote.Run(pb2=run_definition_pb2.Run(action=action))
        await run.abort.aio(reason="aborted in tripwire")


@dataclass(frozen=True)
class _SdkRun:
    phase: str
    url: str | None
    error: str | None
    system: bool
