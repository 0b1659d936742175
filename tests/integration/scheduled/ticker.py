"""A flow on a per-second schedule, kept out of flows/ so other tests do not deploy it.

Each run writes the tick it got to ``$TICKS_DIR/<run name>``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from triggers import current, schedule


@schedule(rate="1s", catchup="all")
def ticker(scheduled_at: datetime) -> None:
    folder = Path(os.environ["TICKS_DIR"])
    (folder / str(current.run_name)).write_text(scheduled_at.isoformat())
