"""Flows the run-lifecycle integration tests deploy: retried, timed out, aborted, chained."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from triggers import current, trigger, trigger_on_finish


def _spawn_child(pid_file: str) -> None:
    """Start a grandchild that outlives nothing: abort and timeout must stop it too."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(pid_file).write_text(str(child.pid))


@trigger(event="flaky_requested", retries=2, retry_backoff="0.2s")
def flaky(marker: str = "", fail_times: int = 1) -> None:
    """Fails its first ``fail_times`` attempts, counting them in the ``marker`` file."""
    path = Path(marker)
    attempt = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempt))
    if attempt <= fail_times:
        raise ValueError(f"attempt {attempt} fails on purpose")


@trigger(event="slow_requested", timeout="2s")
def slow(pid_file: str = "", seconds: float = 120.0) -> None:
    _spawn_child(pid_file)
    time.sleep(seconds)


@trigger(event="long_requested")
def long_running(pid_file: str = "", seconds: float = 120.0) -> None:
    _spawn_child(pid_file)
    time.sleep(seconds)


@trigger(event="chain_started")
def chain_a() -> None:
    _note("chain_a")


@trigger_on_finish(flow="chain_a")
def chain_b() -> None:
    _note("chain_b")


@trigger_on_finish(flow="chain_b")
def chain_c() -> None:
    _note("chain_c")


def _note(flow: str) -> None:
    """Append what this run saw of its upstream run to $TRIPWIRE_HOME/chain.jsonl."""
    upstream = current.run
    line = {
        "flow": flow,
        "run": current.run_name,
        "upstream": upstream.name if upstream else None,
        "upstream_flow": upstream.flow if upstream else None,
        "upstream_phase": upstream.phase if upstream else None,
    }
    home = Path(os.environ["TRIPWIRE_HOME"])
    with (home / "chain.jsonl").open("a") as out:
        out.write(json.dumps(line) + "\n")
