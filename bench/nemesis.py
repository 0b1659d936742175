"""Faults at random against a model: Jepsen-style testing of "every satisfied trigger runs
exactly once".

Each schedule starts a system of its own (Tansu keeping its data in moto's S3, a
PostgreSQL of its own, ``--workers`` `tripwire worker` processes), publishes a seeded
random workload for every trigger kind at once, and injects a seeded schedule of faults
meanwhile: workers SIGKILLed and restarted, workers paused past their session timeout,
the broker restarted, PostgreSQL stopped, run processes killed, and one worker's clock
skewed. Once the faults are healed and the system has quiesced, a checker compares the
store, the run-events topic and the flows' own ledger with what a reference model
computes from the events topic (tests/nemesis/, docs/reliability.md).

    python bench/nemesis.py [--schedules 30] [--first 1] [--seed N] [--duration 60]
                            [--workers 3] [--keep]

``--seed N`` replays schedule N alone (a failing schedule prints this line). The exit
code is 1 when any schedule found a difference.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.nemesis.runner import Result, run_schedule


async def main() -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the broker restarts, on purpose
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=30)
    parser.add_argument("--first", type=int, default=1, help="the seed of the first schedule")
    parser.add_argument("--seed", type=int, help="replay this schedule alone")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep every schedule's logs")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.schedules)
    root = Path(tempfile.mkdtemp(prefix="tripwire-nemesis-"))
    print(
        f"{os.cpu_count()} cores; {len(seeds)} schedules of {args.duration:g}s, "
        f"{args.workers} workers; logs under {root}",
        flush=True,
    )
    results: list[Result] = []
    for seed in seeds:
        folder = root / f"seed-{seed}"
        result = await run_schedule(
            seed, folder, duration=args.duration, workers=args.workers, say=_say
        )
        results.append(result)
        print("\n".join(result.lines()), flush=True)
        if result.passed and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    _summary(results)
    failed = [r.seed for r in results if not r.passed]
    if failed:
        print(f"FAILED schedules: {failed}; logs under {root}")
    return 1 if failed else 0


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def _summary(results: list[Result]) -> None:
    faults = sum((r.injected for r in results), Counter())
    reports = [r.report for r in results]
    print(
        f"\nschedules {len(results)}, passed {sum(r.passed for r in results)}; faults "
        f"{sum(faults.values())} ({', '.join(f'{k} {n}' for k, n in sorted(faults.items()))}); "
        f"skewed clocks {sum('skewed' in ' '.join(r.schedule) for r in results)}; events "
        f"{sum(r.events for r in results)} ({sum(r.retried for r in results)} publishes "
        f"retried); expected runs {sum(r.expected for r in reports)}; lost "
        f"{sum(len(r.lost) for r in reports)}; duplicated {sum(len(r.duplicated) for r in reports)}"
        f"; unexpected {sum(len(r.unexpected) for r in reports)}; wrong parameters "
        f"{sum(len(r.wrong_parameters) for r in reports)}; not succeeded "
        f"{sum(len(r.not_succeeded) for r in reports)}; flows not run once "
        f"{sum(len(r.ran) for r in reports)}; lifecycle events missing "
        f"{sum(len(r.lifecycle_missing) for r in reports)}; workers exited on their own "
        f"{sum(len(r.crashed) for r in results)}"
    )
    print(f"{sum(r.seconds for r in results) / 60:.1f} minutes in all")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
