"""The README demo: start `tripwire dev examples/`, publish an event, show the run.

Run it with `make demo` (which also creates the venv), or with
`python examples/demo.py` inside an installed environment. It uses the CLI
exactly as you would, in a private TRIPWIRE_HOME, and stops the engine at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
TRIPWIRE = [sys.executable, "-m", "sensors"]
TIMEOUT = 60.0


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def tripwire(*args: str, env: dict[str, str]) -> str:
    print("$ tripwire " + shlex.join(args), flush=True)
    done = subprocess.run([*TRIPWIRE, *args], env=env, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        sys.exit(f"tripwire {args[0]} failed:\n{done.stderr}")
    return done.stdout


def wait_for(what: str, check, timeout: float = TIMEOUT):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    sys.exit(f"timed out after {timeout:g}s waiting for {what}")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="tripwire-demo-"))
    env = {**os.environ, "TRIPWIRE_HOME": str(home)}
    env.pop("TRIPWIRE_KAFKA_BOOTSTRAP", None)
    env.pop("TRIPWIRE_DATABASE_URL", None)

    step(f"starting `tripwire dev {EXAMPLES.name}/` (log: {home / 'dev.log'})")
    log = (home / "dev.log").open("w")
    engine = subprocess.Popen([*TRIPWIRE, "dev", str(EXAMPLES)], env=env, stdout=log, stderr=log)
    try:
        started = time.monotonic()
        wait_for(
            "the dev engine", lambda: (home / "dev.json").exists() or engine.poll() is not None
        )
        if engine.poll() is not None:
            sys.exit(f"tripwire dev exited early:\n{(home / 'dev.log').read_text()}")
        print(f"engine ready in {time.monotonic() - started:.1f}s")

        step("publishing data_updated")
        event_id = tripwire(
            "publish",
            "data_updated",
            "--payload",
            json.dumps({"table": "sales", "rows": 1234}),
            "-p",
            "day=2026-11-23",
            env=env,
        ).strip()
        print(f"event id {event_id}")

        step("waiting for the run it triggers")

        def finished() -> dict | None:  # type: ignore[type-arg]
            runs = json.loads(tripwire("runs", "list", "--json", env=env))
            for run in runs:
                ids = {e["id"] for e in run["events"]}
                if event_id in ids and run["phase"] in ("SUCCEEDED", "FAILED"):
                    return run
            return None

        run = wait_for("the run to finish", finished)
        print(tripwire("runs", "get", run["name"], env=env))
        if run["phase"] != "SUCCEEDED":
            sys.exit("the run did not succeed")
        print(f"run log ({home / 'runs' / run['name'] / 'run.log'}):")
        print((home / "runs" / run["name"] / "run.log").read_text())
        step(f"SUCCEEDED with parameters {json.dumps(run['parameters'])}")
    finally:
        engine.send_signal(signal.SIGINT)
        try:
            engine.wait(timeout=15)
        except subprocess.TimeoutExpired:
            engine.kill()
        log.close()


if __name__ == "__main__":
    main()
