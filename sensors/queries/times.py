"""How the read models and the CLI show a time.

Apart from :mod:`sensors.queries.runs`, which imports the run store, so that the CLI's
rendering can use it without that start-up time (bench/startup.py).
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["when"]


def when(value: datetime | None) -> str:
    """A time to the second, or ``-`` for none."""
    return value.isoformat(timespec="seconds") if value else "-"
