"""The Flyte side of examples/orchestrators/flyte/flows.py: a TaskEnvironment with one task.

Run it by hand in Flyte's local mode with ``flyte run --local _tasks.py load_day --day
2026-12-01``; tripwire runs it as the target ``flyte://orders.load_day``.
"""

import flyte

env = flyte.TaskEnvironment(name="orders")


@env.task
def load_day(day: str, rows: int = 0) -> str:
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    return f"loaded {rows} rows of {day}"
