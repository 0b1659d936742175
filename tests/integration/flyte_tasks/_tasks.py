"""Flyte 2 tasks the flyte:// tests run in Flyte's local mode (in .venv-flyte)."""

import os
import time
from pathlib import Path

import flyte

env = flyte.TaskEnvironment(name="tests")


@env.task
def load_day(day: str, rows: int = 0) -> str:
    """Notes each run in $FLYTE_TEST_LEDGER, so a test counts how often it ran."""
    with Path(os.environ["FLYTE_TEST_LEDGER"]).open("a") as ledger:
        ledger.write(f"{day} {rows}\n")
    if rows < 0:
        raise ValueError(f"rows must not be negative, got {rows}")
    return f"loaded {rows} rows of {day}"


@env.task
def wait_long(day: str, rows: int = 0) -> str:
    time.sleep(120)
    return day
