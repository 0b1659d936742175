"""tripwire's side: each ``day_closed`` event starts a run of the Dagster job ``load_day``
(see _definitions.py for Dagster's side, and docs/orchestrators/dagster.md).

    TRIPWIRE_DAGSTER_URL=http://127.0.0.1:3000 tripwire dev examples/orchestrators/dagster
    tripwire publish day_closed -p day=2026-11-23 -p rows=5000
    tripwire runs get <run name>      # its attempt links to http://127.0.0.1:3000/runs/<id>
"""

from triggers import target, trigger


# No server in the URL: the worker's TRIPWIRE_DAGSTER_URL. No code location either: the one
# that has the job. The run config says where the parameters go ("{rows}" alone keeps the
# number a number). A retry is a new Dagster run, tagged tripwire/run=<run>-a2.
@target(
    "dagster:///load_day",
    run_config={"ops": {"load": {"config": {"day": "{day}", "rows": "{rows}"}}}},
    tags={"team": "data"},
)
@trigger(event="day_closed", retries=1)
def load_day_on_dagster(day: str = "", rows: int = 1000) -> None: ...
