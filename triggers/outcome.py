"""What a run process reports: its exit code, and the result file the launcher reads.

The result file is JSON: ``{"ok": true}`` or ``{"ok": false, "kind": "USER"|"SYSTEM",
"code", "message", "traceback"}``, plus ``outputs`` when the run reported something about
itself (a Metaflow run's pathspec). It is written whole or not at all (a rename).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_OK",
    "EXIT_SYSTEM",
    "EXIT_USER",
    "GATE",
    "TERMINATION_LOG",
    "passed_gate",
    "process_outcome",
    "refused_marker",
    "run_process",
    "write",
]

EXIT_OK, EXIT_USER, EXIT_SYSTEM = 0, 1, 3

GATE = "TRIPWIRE_RUN_GATE"
"""Names the FIFO a local run's process waits at before anything of its flow runs."""

TERMINATION_LOG = "TRIPWIRE_TERMINATION_LOG"
"""Names the file a pod's container reports through (its terminationMessagePath)."""
_TERMINATION_LIMIT = 4096


def passed_gate() -> bool:
    """Wait at the run's gate, if it has one: whether its worker let it through.

    A local run's worker starts its process, then records its attempt, which the store
    refuses to a worker that the others took for gone (and whose run went to another).
    So the process waits here, before it loads the flow, on the FIFO that
    ``TRIPWIRE_RUN_GATE`` names, until the worker writes a byte to it or closes it (or
    dies). Once the attempt is recorded, the worker also creates the file ``GATE.go``,
    which outlives it: the flow runs if either says so, and not otherwise. A process not
    let through leaves :func:`refused_marker` behind, so that whoever settles its attempt
    knows that nothing of the flow ran, even if its worker died.
    """
    path = os.environ.pop(GATE, None)  # the flow's own child processes have none
    if not path:
        return True
    if _let_through(path):
        return True
    refused_marker(path, os.getpid()).touch()
    return False


def refused_marker(gate: str | Path, pid: int) -> Path:
    """The file that run process ``pid`` leaves next to its ``gate`` when it was not let
    through: named by the pid, so that no other attempt's process can stand for it."""
    return Path(f"{gate}.refused.{pid}")


def _let_through(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # no writer left: no wait to open
    except OSError:
        return os.path.exists(path + ".go")
    try:
        os.set_blocking(fd, True)
        if os.read(fd, 1) == b"1":
            return True
    except OSError:
        pass
    finally:
        os.close(fd)
    return os.path.exists(path + ".go")  # the worker died after it let the run through


def write(result_path: Path, outcome: dict[str, Any]) -> None:
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(outcome))
    tmp.replace(result_path)
    report = os.environ.get(TERMINATION_LOG)
    if report and outcome.get("outputs"):
        # In a pod: Kubernetes keeps this file in the container's status (4 KiB at most),
        # which is how the launcher learns what the run reported. It is a mounted file:
        # written in place, never replaced.
        text = json.dumps({"outputs": outcome["outputs"]})
        if len(text.encode()) <= _TERMINATION_LIMIT:
            with open(report, "w") as out:
                out.write(text)


def run_process(
    argv: list[str], env: dict[str, str], cwd: str | None, result: Path
) -> subprocess.CompletedProcess[bytes] | int:
    """Run ``argv`` to its end, no shell, its output going to the run log; the exit code
    of the run process instead if it could not start (written to ``result``)."""
    try:
        return subprocess.run(
            argv, env={**os.environ, **env}, cwd=cwd, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        # Not there, or not executable, on this worker: the machine's problem, not the flow's.
        message = f"cannot start command {argv[0]!r}: {exc}"
        print(message, file=sys.stderr)
        write(
            result, {"ok": False, "kind": "SYSTEM", "code": "CommandNotStarted", "message": message}
        )
        return EXIT_SYSTEM


def process_outcome(
    argv: list[str],
    code: int,
    result: Path,
    outputs: dict[str, Any] | None = None,
    *,
    message: str | None = None,
    error: str = "NonZeroExit",
) -> int:
    """Write what a process's exit code means to ``result``; return the run's exit code.
    ``outputs`` is what the run reports about itself (a Metaflow run's pathspec); ``message``
    and ``error`` say why a failure failed, when more is known than the exit code."""
    extra = {"outputs": outputs} if outputs else {}
    if code == 0:
        write(result, {"ok": True, **extra})
        return EXIT_OK
    if code < 0:
        message = f"command {argv[0]!r} was killed by signal {-code}"
        return _failed(result, "SYSTEM", "ProcessKilled", message, extra)
    message = message or f"command {argv[0]!r} exited with code {code}"
    return _failed(result, "USER", error, message, extra)


def _failed(
    result: Path, kind: str, code: str, message: str, extra: dict[str, Any] | None = None
) -> int:
    write(result, {"ok": False, "kind": kind, "code": code, "message": message, **(extra or {})})
    return EXIT_USER if kind == "USER" else EXIT_SYSTEM
