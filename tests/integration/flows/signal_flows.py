"""Flows that pause for a signal (wait_for_event); each writes what it got next to its run."""

from __future__ import annotations

from pathlib import Path

from triggers import current, trigger, wait_for_event
from triggers.settings import get_settings


def _note(text: str) -> None:
    (get_settings().home / f"{current.run_name}.signal").write_text(text)


@trigger(event="needs_approval")
def approve_me(table: str = "sales") -> None:
    approved = wait_for_event("approval", type=bool, timeout="120s")
    _note(repr(approved))


@trigger(event="needs_count")
def count_me(table: str = "sales") -> None:
    count = wait_for_event("count", type=int, timeout="2s")
    _note(repr(count))


def signal_note(run_name: str) -> Path:
    """Where a run of these flows writes the value it was signalled."""
    return get_settings().home / f"{run_name}.signal"
