"""tripwire's side: each ``orders_closed`` event runs the Flyte 2 task ``orders.load_day``
(see _tasks.py for Flyte's side, and docs/orchestrators/flyte.md).

Here in Flyte's local mode, in a process on the worker's machine: the worker's Python needs
the Flyte SDK (``pip install 'flyte>=2,<3'``), or ``python=`` names one that has it.

    tripwire dev examples/orchestrators/flyte
    tripwire publish orders_closed -p day=2026-12-01 -p rows=5000
    tripwire runs get <run name>      # SUCCEEDED, with the task's outputs
"""

from pathlib import Path

from triggers import target, trigger

TASKS = str(Path(__file__).with_name("_tasks.py"))


# On a Flyte backend, leave out mode= and module=: `flyte://PROJECT/DOMAIN/orders.load_day`
# runs the registered task (its latest version, or version=) on the backend the worker's
# Flyte config names. The Flyte run's name is the run's; a retry is a new run.
@target("flyte://orders.load_day", mode="local", module=TASKS)
@trigger(event="orders_closed", retries=1)
def load_orders_on_flyte(day: str = "", rows: int = 0) -> None: ...
