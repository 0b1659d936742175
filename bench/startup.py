"""Start-up benchmark: what a run, a publisher and a CLI call pay before doing anything.

Each command runs in a fresh interpreter, ``--runs`` times, and the best wall time is
printed next to ``python -c pass`` measured in the same run (the interpreter's own
start), with the CPU time (user + system, from the children's rusage) of that best run:

- ``import triggers``: what every run and every publisher pays first;
- ``tripwire --help``: the CLI's own start;
- ``tripwire publish``: one event to a broker (the embedded one unless ``--bootstrap``
  or ``TRIPWIRE_TEST_KAFKA``), connection included;
- ``tripwire dev``: from the command to ``dev.json``, written once its broker, store and
  stages are up and it accepts events (promised within 10 s), then stopped with Ctrl-C.

    python bench/startup.py [--runs 7] [--bootstrap host:port]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/startup.py`, this file's folder comes first on sys.path and would
# shadow the `sensors` package.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()
]

import argparse
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time

from bench.common import kafka

HERE = Path(__file__).parent

TARGETS = {
    "import triggers": 0.100,
    "tripwire --help": 0.250,
    "tripwire publish": 0.400,
    "tripwire dev": 10.0,
}
"""The targets, wall seconds on 2 cores."""


def best_of(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """The best wall time of ``runs`` runs of ``argv``, and the CPU time of that run."""
    best = (float("inf"), 0.0)
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))
    return best


def dev_ready(tripwire: str, flows: Path, runs: int, env: dict[str, str]) -> tuple[float, float]:
    """The best time of ``runs`` starts of ``tripwire dev FLOWS`` until it accepts events
    (its ``dev.json``), each in a home of its own, and the CPU time of that start."""
    best = (float("inf"), 0.0)
    for _ in range(runs):
        home = Path(tempfile.mkdtemp(prefix="tripwire-dev-"))
        started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        with subprocess.Popen(
            [tripwire, "dev", str(flows)],
            env={**env, "TRIPWIRE_HOME": str(home), "TRIPWIRE_KAFKA_BOOTSTRAP": ""},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as dev:
            while not (home / "dev.json").exists():
                if dev.poll() is not None or time.perf_counter() - started > 120:
                    raise SystemExit(f"tripwire dev did not start; run `{tripwire} dev {flows}`")
                time.sleep(0.01)
            wall = time.perf_counter() - started
            dev.send_signal(signal.SIGINT)
            dev.wait(30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))  # cpu includes the shutdown: an upper bound
        shutil.rmtree(home, ignore_errors=True)
    return best


def main(args: argparse.Namespace) -> None:
    python = sys.executable
    tripwire = shutil.which("tripwire", path=str(Path(python).parent)) or "tripwire"
    home = tempfile.mkdtemp(prefix="tripwire-startup-")
    with kafka(args.bootstrap) as bootstrap:
        env = {**os.environ, "TRIPWIRE_HOME": home, "TRIPWIRE_KAFKA_BOOTSTRAP": bootstrap}
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "import triggers": [python, "-c", "import triggers"],
            "tripwire --help": [tripwire, "--help"],
            "tripwire publish": [tripwire, "publish", "bench_startup", "-p", "n=1"],
        }
        print(f"{os.cpu_count()} cpus, python {sys.version.split()[0]}, best of {args.runs} runs")
        base = None
        for name, argv in [*commands.items(), ("tripwire dev", [])]:
            if argv:
                wall, cpu = best_of(argv, args.runs, env)
            else:
                wall, cpu = dev_ready(tripwire, HERE / "flows", min(args.runs, 3), env)
            base = wall if base is None else base
            target = TARGETS.get(name)
            goal = f"  target {target * 1000:.0f} ms" if target else ""
            print(
                f"{name:<18} {wall * 1000:7.0f} ms wall  {cpu * 1000:7.0f} ms cpu  "
                f"({(wall - base) * 1000:+.0f} ms over the interpreter){goal}"
            )
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--bootstrap")
    main(parser.parse_args())
