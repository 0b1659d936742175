"""The gate a local run's process waits at until its worker recorded the attempt: the
worker's side (Gate) and the process's (triggers.outcome.passed_gate), with real FIFOs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensors.launchers.process import Gate
from triggers.outcome import GATE, passed_gate


def test_a_process_with_no_gate_goes_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GATE, raising=False)
    assert passed_gate()


def test_a_process_goes_once_its_worker_let_it_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(tmp_path)
    monkeypatch.setenv(GATE, str(gate.path))
    gate.open()
    assert passed_gate()
    assert GATE not in os.environ  # the flow's own processes are not gated
    gate.close()
    assert list(tmp_path.iterdir()) == []


def test_a_process_whose_attempt_was_refused_does_not_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refused(tmp_path, monkeypatch)
    # and says so, by its pid, for whoever settles the attempt
    assert Gate.refused(tmp_path, os.getpid())
    assert not Gate.refused(tmp_path, os.getpid() + 1)


def test_a_new_attempts_gate_clears_what_earlier_processes_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a process that an earlier attempt's gate refused
    _refused(tmp_path, monkeypatch)
    assert Gate.refused(tmp_path, os.getpid())
    # When the next attempt makes its gate, its process may get the same pid
    Gate(tmp_path).close()
    # Then that pid says nothing of it
    assert not Gate.refused(tmp_path, os.getpid())


@pytest.mark.parametrize("let_through", [False, True])
def test_a_process_whose_worker_died_goes_only_if_the_worker_let_it_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, let_through: bool
) -> None:
    # Given a worker that made the gate, let the process through or not, and died
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from sensors.launchers.process import Gate\n"
        "gate = Gate(Path(sys.argv[1]))\n"
        "if sys.argv[2] == 'go':\n"
        "    gate.open()\n"
        "os._exit(0)\n"
    )
    worker = [sys.executable, "-c", script, str(tmp_path), "go" if let_through else "no"]
    subprocess.run(worker, check=True, cwd=Path(__file__).parents[4])
    monkeypatch.setenv(GATE, str(tmp_path / "start.gate"))
    # Then the process reads an end of file, and goes only if its attempt was recorded
    assert passed_gate() is let_through
    assert Gate.refused(tmp_path, os.getpid()) is not let_through


def _refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process at a gate in ``folder`` that its worker closed without letting it go."""
    gate = Gate(folder)
    monkeypatch.setenv(GATE, str(gate.path))
    gate.close()
    assert not passed_gate()
