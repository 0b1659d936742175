"""Flows the chaos scenarios deploy. Each run's record (its events) is what the tests count."""

import time
from pathlib import Path

from triggers import trigger


@trigger(event="chaos_tick")
def tick(n: int = 0) -> None: ...


@trigger(events=["chaos_a", "chaos_b"], correlate_by="$.k", within="1h")
def pair(k: str = "") -> None: ...


@trigger(event="chaos_slow")
def slow(n: int = 0, seconds: float = 0.0) -> None:
    time.sleep(seconds)


@trigger(event="chaos_sleeps_once")
def sleeps_once(marker: str = "") -> None:
    """Sleeps (for the test to kill it) the first time, and ends at once the next."""
    if not Path(marker).exists():
        Path(marker).touch()
        time.sleep(120)


@trigger(event="chaos_fails_once", retries=1)
def fails_once(marker: str = "") -> None:
    """Fails the first time (its retry is what the test is about), and ends at once the next."""
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("the first attempt fails")


@trigger(event="chaos_counted")
def counted(marker: str = "") -> None:
    """Adds a line to ``marker`` each time it runs: how often the flow ran, whoever ran it."""
    with Path(marker).open("a") as out:
        out.write("ran\n")
