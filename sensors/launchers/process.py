"""The process side of ``local://``: run folders, process groups, and reading outcomes.

A run process is ``python -m triggers.run`` in its own session (so its process
group is everything it started). It reads ``context.json`` and writes
``result.json`` in ``$TRIPWIRE_HOME/runs/<run name>/``, next to ``run.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from sensors.launchers.base import template_values
from sensors.runs.models import RunRecord
from triggers.outcome import refused_marker
from triggers.settings import Settings
from triggers.targets import CommandTarget, TargetSpec, render

__all__ = [
    "Gate",
    "exit_reason",
    "is_run_process",
    "log_tail",
    "note_forked",
    "pid_alive",
    "pid_namespace",
    "prepare",
    "process_started",
    "read_result",
    "run_context",
    "run_dir",
    "signal_group",
    "stop_group",
    "wait_pid",
]

_LOG_TAIL_BYTES = 2000


class Gate:
    """Where a run's process waits until its attempt is recorded (triggers.outcome,
    ``passed_gate``): a FIFO in the run's folder, held open here for writing from before
    the process starts until the attempt ends. :meth:`open` lets the process through;
    :meth:`close` without it (or this worker dying before it) sends it an end of file,
    and nothing of the flow runs: the process says so in a file (:meth:`refused`)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "start.gate"
        self._go = folder / "start.gate.go"
        self.path.unlink(missing_ok=True)  # an earlier attempt's
        self._go.unlink(missing_ok=True)
        # Earlier attempts' too: a later process given the same pid must not stand for one.
        for marker in folder.glob(f"{self.path.name}.refused.*"):
            marker.unlink(missing_ok=True)
        os.mkfifo(self.path, 0o600)
        # Read and write: opening a FIFO so never waits for the other end.
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def open(self) -> None:
        """Let the process through: a file that outlives this worker first, then a byte
        that wakes the process (lost if this worker dies before the process reads it)."""
        assert self._fd is not None
        self._go.touch()
        os.write(self._fd, b"1")

    @staticmethod
    def refused(folder: Path, pid: int) -> bool:
        """Whether run process ``pid`` in ``folder`` ended at its gate, not let through:
        nothing of its flow ran."""
        return refused_marker(folder / "start.gate", pid).exists()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)
            self._go.unlink(missing_ok=True)


_STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
_PID_POLL = 0.2  # seconds between looks at a process that is not our child


def run_dir(settings: Settings, name: str) -> Path:
    """The folder that holds a local run's context, result and log."""
    return (settings.home / "runs" / name).resolve()


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_started(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; None where it cannot be read.

    With the pid it names one process start: a process given the same pid later started
    later. Read from field 22 of ``/proc/<pid>/stat`` (Linux), after the command name in
    parentheses, which may itself hold spaces and parentheses.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rpartition(")")[2].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def pid_namespace() -> str:
    """The pid namespace this process sees pids in (its inode number), or "" where unknown.

    Containers that share a hostname (host networking, a fixed ``hostname``) each have
    their own: a pid from another one means nothing here.
    """
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    return link.partition("[")[2].rstrip("]")


def is_run_process(pid: int, folder: Path) -> bool:
    """True if ``pid`` is alive and is the run process of the run in ``folder``.

    Checks its command line where /proc exists, so a reused pid is not mistaken for it; a
    run process forked from a zygote has the zygote's command line, and is told by the
    start time its launcher noted (:func:`note_forked`).
    """
    if not pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no /proc here: the pid is all we can go by
    try:
        if str(folder / "context.json").encode() in cmdline.read_bytes():
            return True
        return (folder / "run.pid").read_text() == f"{pid} {process_started(pid)}"
    except OSError:
        return False


def note_forked(pid: int, folder: Path) -> None:
    """Note in the run's folder which process start ``pid`` is, for :func:`is_run_process`."""
    (folder / "run.pid").write_text(f"{pid} {process_started(pid)}")


def noted_run_process(folder: Path) -> int | None:
    """The pid :func:`note_forked` noted in ``folder``, if that process still runs."""
    try:
        pid = int((folder / "run.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if is_run_process(pid, folder) else None


async def wait_pid(pid: int) -> None:
    """Return once process ``pid``, which is not our child, is gone."""
    try:
        fd = os.pidfd_open(pid)  # Linux: readable when the process exits
    except (AttributeError, OSError):
        while pid_alive(pid):  # noqa: ASYNC110  # no pidfd here: poll
            await asyncio.sleep(_PID_POLL)
        return
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not gone.done():
            gone.set_result(None)

    loop.add_reader(fd, exited)
    try:
        await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop_group(pid: int, ended: asyncio.Future[Any] | None = None) -> None:
    """SIGTERM a run's process group; SIGKILL it if it is still there after a grace period.

    ``ended`` resolves when the leader exits (a child's ``wait()``); without it, the
    pid is polled.
    """
    signal_group(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(ended) if ended else wait_pid(pid), _STOP_GRACE)
    signal_group(pid, signal.SIGKILL)  # also children that outlived the leader


def prepare(run: RunRecord, folder: Path) -> tuple[Path, Path]:
    """Write the run's context file; return it and the result file's path.

    Blocking, but a few kilobytes on local disk: cheaper than a thread hop.
    """
    folder.mkdir(parents=True, exist_ok=True)
    context = folder / "context.json"
    result = folder / "result.json"
    result.unlink(missing_ok=True)
    context.write_text(json.dumps(run_context(run)))
    return context, result


def run_context(run: RunRecord) -> dict[str, Any]:
    """What a run process reads (``python -m triggers.run``): the flow, its inputs, how it
    was triggered and, for ``command://``, the command."""
    return {
        "run_name": run.name,
        "project": run.project,
        "domain": run.domain,
        "flow": run.flow,
        "entrypoint": run.entrypoint,
        "parameters": run.parameters,
        "events": run.events,
        "scheduled_at": run.scheduled_at.isoformat() if run.scheduled_at else None,
        "trigger_info": run.trigger_info,
        "command": _command(run),
    }


def _command(run: RunRecord) -> dict[str, Any] | None:
    """The argv, environment and folder of a ``command://`` run, its templates filled in."""
    options = TargetSpec(url=run.target, options=run.target_options or {}).model()
    if not isinstance(options, CommandTarget):
        return None
    values = template_values(run)
    return {
        "argv": render(list(options.argv), values, typed=False),
        "env": render(options.env, values, typed=False),
        "cwd": options.cwd,
    }


def read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def exit_reason(code: int | None) -> str:
    if code is None:
        return "the run's process ended while no worker watched it, without reporting a result"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the run's process was killed by {name}"
    return f"the run's process exited with code {code} without reporting a result"


def log_tail(path: Path) -> str | None:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return None
