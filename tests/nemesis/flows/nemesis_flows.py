"""The flows the nemesis deploys: one per trigger kind its workload exercises.

Each run notes in the ledger (``$NEMESIS_LEDGER/<run name>``) when its flow began and
when it finished, so the checker counts how often a flow really ran, whatever the
store says. The work in between lasts 0.1-0.6 s, long enough for the nemesis to kill
run processes in the middle of it.
"""

import os
import time
import zlib
from pathlib import Path

from triggers import current, schedule, trigger, trigger_on_finish

WINDOW = "10m"


def _work() -> None:
    name = current.run_name or "outside-a-run"
    ledger = Path(os.environ["NEMESIS_LEDGER"]) / name
    with ledger.open("a") as out:
        out.write("start\n")
    time.sleep(0.1 + zlib.crc32(name.encode()) % 500 / 1000)
    with ledger.open("a") as out:
        out.write("done\n")


@trigger(events=["nm_a", "nm_b"], correlate_by="$.k", within=WINDOW)
def nm_pair(k: str = "", a: int = -1, b: int = -1) -> None:
    _work()


@trigger(
    events=["nm_x", "nm_y", "nm_z"],
    conditions="nm_x || (nm_y && nm_z)",
    correlate_by="$.k",
    within=WINDOW,
)
def nm_either(k: str = "", x: int = -1, y: int = -1, z: int = -1) -> None:
    _work()


@trigger(event="nm_th", threshold=3, correlate_by="$.k", within=WINDOW)
def nm_count(k: str = "") -> None:
    _work()


@trigger(sequence=["nm_s1", "nm_s2", "nm_s3"], correlate_by="$.k", within=WINDOW)
def nm_steps(k: str = "", s1: int = -1, s2: int = -1, s3: int = -1) -> None:
    _work()


@trigger(event="nm_burst", debounce="2s", correlate_by="$.k", within=WINDOW)
def nm_settle(k: str = "", n: int = -1) -> None:
    _work()


@schedule(rate="5s", catchup="all")
def nm_tick() -> None:
    _work()


@trigger_on_finish(flow="nm_pair")
def nm_after() -> None:
    _work()
