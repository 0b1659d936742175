"""Crash points for fault-injection tests: die at a named point, as a SIGKILL would, or
stop there, as a long pause would.

``TRIPWIRE_CRASH_AT=source.published`` makes a process kill itself the first time
it reaches that point, for tests that must crash between two steps that follow
each other too closely to hit with a signal from outside. ``TRIPWIRE_PAUSE_AT``
makes it SIGSTOP itself there the first time instead, until the test sends SIGCONT.
Unset, a point costs two dictionary lookups.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]

_paused: set[str] = set()  # the pause points passed: each stops a process once


def crash_point(name: str) -> None:
    """SIGKILL this process if ``TRIPWIRE_CRASH_AT`` (a comma-separated list) names ``name``;
    SIGSTOP it if ``TRIPWIRE_PAUSE_AT`` does and it has not stopped there before."""
    crash, pause = os.environ.get("TRIPWIRE_CRASH_AT"), os.environ.get("TRIPWIRE_PAUSE_AT")
    if crash and name in crash.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause and name in pause.split(",") and name not in _paused:
        _paused.add(name)
        os.kill(os.getpid(), signal.SIGSTOP)
