"""A warm parent for local runs: ``python -m triggers.zygote ENTRYPOINT``.

A cold run process imports tripwire's SDK and the flow's module before the flow starts,
a few hundred milliseconds of CPU per run. A zygote does that once, for one flow
revision, and then forks a run process per request, as a forkserver does: the child
starts with everything imported. The worker talks to it over stdin and stdout, one
JSON object per line:

- it answers ``{"ready": PID}`` once the module is imported, or ``{"unsafe": REASON}``
  when forking it would not be safe (the module started a thread at import: a forked
  child gets a copy of no thread but of every lock the thread held), and exits;
- a request ``{"id": N, "context": FILE, "result": FILE, "log": FILE, "cwd": DIR,
  "env": {...}}`` is answered ``{"id": N, "pid": PID}`` once the child runs;
- ``{"exited": PID, "code": CODE}`` reports a child's end, as ``Popen.returncode`` gives
  it (negative: killed by that signal).

The zygote is single-threaded and runs no event loop, so there is nothing half-done to
inherit. Each child is a session and process group of its own (a timeout or an abort
kills its whole tree), writes to its run's log, gets a fresh environment and working
folder, and binds ``triggers.current`` from its own context file, exactly like a cold run
(``python -m triggers.run``). The zygote exits when its stdin closes; children go on.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from triggers.error_text import exception_text

__all__ = ["main"]


_REPORTS = 1  # the pipe to the worker; main() moves it off stdout


def main() -> int:
    global _REPORTS
    # What the flow's module prints at import goes to the zygote's log (stderr), not
    # into the pipe of reports.
    _REPORTS = os.dup(1)
    os.dup2(2, 1)
    import triggers.run  # what each child runs, imported once
    from triggers.loader import load_entrypoint
    from triggers.spec import Entrypoint

    try:
        triggers.run.prepare(load_entrypoint(Entrypoint.model_validate_json(sys.argv[1])))
    except BaseException as exc:  # the cold path reports it, with the run's own log
        _report({"unsafe": f"its module did not import here: {exception_text(exc)}"})
        return 0
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        _report({"unsafe": f"its module started threads at import ({', '.join(others)})"})
        return 0
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    gc.freeze()
    _report({"ready": os.getpid()})
    pending = b""
    while True:
        readable, _, _ = select.select([0, wake_read], [], [])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap()
        if 0 in readable:
            chunk = os.read(0, 65536)
            if not chunk:
                return 0  # the worker went: its runs go on
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    _fork(json.loads(line), (wake_read, wake_write, _REPORTS))
            _reap()


def _fork(request: dict[str, Any], own: tuple[int, ...]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        _report({"id": request["id"], "pid": pid})
        return
    code = 3  # SYSTEM, as triggers.run says of a run that could not start
    try:
        code = _child(request, own)
    except BaseException:
        traceback.print_exc()  # to the run's log, if the child got that far
    finally:
        sys.stderr.flush()
        os._exit(code)


def _child(request: dict[str, Any], own: tuple[int, ...]) -> int:
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in own:
        os.close(fd)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    from triggers.run import run

    code = run(Path(request["context"]), Path(request["result"]))
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _report({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _report(message: dict[str, Any]) -> None:
    os.write(_REPORTS, json.dumps(message).encode() + b"\n")


if __name__ == "__main__":
    sys.exit(main())
