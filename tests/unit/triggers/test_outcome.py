"""What a run process reports: the result file, and in a pod its termination message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from triggers.outcome import TERMINATION_LOG, write


def test_in_a_pod_the_outputs_go_to_the_termination_message_written_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kubernetes mounts the termination message file: it must be written, never replaced
    report = tmp_path / "termination-log"
    report.write_text("")
    inode = os.stat(report).st_ino
    monkeypatch.setenv(TERMINATION_LOG, str(report))
    outputs = {"metaflow": {"pathspec": "LoadFlow/7"}}
    write(tmp_path / "result", {"ok": True, "outputs": outputs})
    assert json.loads(report.read_text()) == {"outputs": outputs}
    assert os.stat(report).st_ino == inode
    assert json.loads((tmp_path / "result").read_text())["ok"] is True


def test_a_result_without_outputs_or_outside_a_pod_writes_no_termination_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_LOG, str(report))
    write(tmp_path / "result", {"ok": True})
    assert not report.exists()
    monkeypatch.delenv(TERMINATION_LOG)
    write(tmp_path / "result", {"ok": True, "outputs": {"a": 1}})
    assert not report.exists()
