"""The Dagster side of the example: a code location with the jobs that tripwire launches.

Its name starts with `_`, so `tripwire dev examples/` leaves it to Dagster, which has
its own environment (tripwire needs no dagster package):

    pip install 'dagster>=1.10,<2' 'dagster-webserver>=1.10,<2'
    dagster dev -f examples/orchestrators/dagster/_definitions.py -p 3000

Each job runs its op in the run worker's process (in_process_executor): a run is one
process, not one per step.
"""

import time

import dagster as dg


class Day(dg.Config):
    day: str
    rows: int = 0


@dg.op
def load(context: dg.OpExecutionContext, config: Day) -> int:
    context.log.info(f"loading {config.rows} rows of {config.day}")
    return config.rows


@dg.op
def load_or_fail(config: Day) -> int:
    raise ValueError(f"no data landed for {config.day}")


class Wait(dg.Config):
    seconds: float = 600.0


@dg.op
def wait(context: dg.OpExecutionContext, config: Wait) -> None:
    context.log.info(f"waiting {config.seconds:g}s")
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:  # short sleeps: a termination ends it at once
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)
def load_day() -> None:
    load()


@dg.job(executor_def=dg.in_process_executor)
def load_day_broken() -> None:
    load_or_fail()


@dg.job(executor_def=dg.in_process_executor)
def wait_long() -> None:
    wait()


defs = dg.Definitions(jobs=[load_day, load_day_broken, wait_long])
