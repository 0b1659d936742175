"""Flows of each trigger kind, for tests/integration/test_trigger_kinds.py.

Each run writes what ``current`` told it to ``$TRIPWIRE_HOME/RUN_NAME.json``.
"""

import json

from triggers import current, trigger
from triggers.settings import get_settings


def _record() -> None:
    seen = {
        "parameters": current.parameters,
        "count": current.count,
        "event_ids": list(current.event_ids),
        "coalesced_event_ids": list(current.coalesced_event_ids),
        "window": [t.isoformat() for t in current.window] if current.window else None,
        "events": [e.id for e in current.events],
    }
    (get_settings().home / f"{current.run_name}.json").write_text(json.dumps(seen))


@trigger(event="order_failed", threshold=3, within="1m", correlate_by="$.customer")
def too_many_failures(customer: str = "", order: int = 0) -> None:
    _record()


@trigger(sequence=["extract_done", "validate_done"], within="1m")
def validated(batch: str = "") -> None:
    _record()


@trigger(event="orders.*")
def any_order(region: str = "") -> None:
    _record()


@trigger(event="file_landed", debounce="2s")
def ingest(path: str = "") -> None:
    _record()


@trigger(absent="load_finished", after="load_started", within="10s", correlate_by="$.day")
def late_load(day: str = "") -> None:
    _record()
