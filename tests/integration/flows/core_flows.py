"""Flows the core-path integration tests deploy."""

import json
import os
import signal
from datetime import date
from pathlib import Path

from triggers import current, trigger


def _record(out: str) -> None:
    if out:
        Path(out).write_text(
            json.dumps(
                {
                    "run_name": current.run_name,
                    "parameters": current.parameters,
                    "events": [
                        {"name": e.name, "id": e.id, "payload": e.payload} for e in current.events
                    ],
                    "event": current.event.id if current.event else None,
                }
            )
        )


@trigger(event="data_updated")
def refresh(table: str = "sales", rows: int = 0, day: date | None = None, out: str = "") -> None:
    _record(out)


@trigger(
    event={
        "name": "features_ready",
        "parameters": {"window": "how_many_days", "latest": "$.meta.timestamp", "out": "out"},
    }
)
def retrain(
    latest: str = "2023-05-01", window: int = 3, table: str = "unmapped", out: str = ""
) -> None:
    _record(out)


@trigger(event="explode")
def explodes(reason: str = "boom") -> None:
    raise RuntimeError(f"flow failed on purpose: {reason}")


@trigger(event="crash")
def crashes() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
