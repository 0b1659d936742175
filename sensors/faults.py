"""Crash points for fault-injection tests: die at a named point, as a SIGKILL would.

``TRIPWIRE_CRASH_AT=source.published`` makes a process kill itself the first time
it reaches that point, for tests that must crash between two steps that follow
each other too closely to hit with a signal from outside. Unset, a point costs a
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]


def crash_point(name: str) -> None:
    """SIGKILL this process if ``TRIPWIRE_CRASH_AT`` (a comma-separated list) names ``name``."""
    wanted = os.environ.get("TRIPWIRE_CRASH_AT")
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
