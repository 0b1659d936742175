"""Faults at random, checked against a model: two short schedules of bench/nemesis.py (it
runs thirty; docs/reliability.md has the figures). A failure prints the schedule, what the
nemesis did and when, every difference from the model, and the line that replays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.servers import server_missing
from tests.nemesis.runner import run_schedule
from tests.nemesis.system import skewable

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.nemesis]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [1, 2])
async def test_a_random_fault_schedule_runs_exactly_what_the_model_says(
    seed: int, tmp_path: Path
) -> None:
    if not skewable():
        server_missing("libfaketime skews a worker's clock here: apt install faketime")
    result = await run_schedule(seed, tmp_path, duration=40)
    assert result.passed, "\n".join(result.lines())
