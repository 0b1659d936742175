"""Each atheris target over 100,000 inputs (tests/fuzz/targets.py): only documented errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNS = int(os.environ.get("TRIPWIRE_FUZZ_RUNS", "100000"))
ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("target", ["decoder", "conditions", "jsonpath"])
@pytest.mark.timeout(600)
def test_a_fuzz_target_meets_only_documented_errors(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.targets",
            target,
            f"-atheris_runs={RUNS}",
            f"-artifact_prefix={tmp_path}/",
            "-seed=1",  # the same inputs on every run: a failure can be repeated
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = result.stderr[-6000:]
    assert result.returncode == 0, f"the {target} fuzz target crashed:\n{report}"
    assert f"Done {RUNS} " in result.stderr, report
