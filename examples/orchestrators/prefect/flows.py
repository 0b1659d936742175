"""tripwire's side: each ``day_closed`` event starts a flow run of the Prefect deployment
``load-day/nightly`` (see _serve.py for Prefect's side, and docs/orchestrators/prefect.md).

    PREFECT_API_URL=http://127.0.0.1:4200/api tripwire dev examples/orchestrators/prefect
    tripwire publish day_closed -p day=2026-11-23 -p rows=5000
    tripwire runs get <run name>      # its attempt links to the flow run in Prefect's UI
"""

from triggers import target, trigger


# No server in the URL: the worker's TRIPWIRE_PREFECT_URL, else PREFECT_API_URL. The flow
# run's parameters are this template's ("{rows}" alone keeps the number a number); without
# `parameters=` they would be the flow's own. A retry is a new flow run, named <run>-a2.
@target(
    "prefect:///load-day/nightly",
    parameters={"day": "{day}", "rows": "{rows}"},
    tags=["tripwire"],
)
@trigger(event="day_closed", retries=1)
def load_day_on_prefect(day: str = "", rows: int = 1000) -> None: ...
