"""tripwire's side: each ``day_closed`` event triggers a run of the Airflow DAG ``load_day``
(see _dags/load_day.py for Airflow's side, and docs/orchestrators/airflow.md).

    export AIRFLOW_USERNAME=admin AIRFLOW_PASSWORD=...      # a user of the Airflow API
    TRIPWIRE_AIRFLOW_URL=http://127.0.0.1:8080 tripwire dev examples/orchestrators/airflow
    tripwire publish day_closed -p day=2026-11-23 -p rows=5000
    tripwire runs get <run name>      # its attempt links to the DAG run in Airflow's UI
"""

from triggers import target, trigger


# No server in the URL: the worker's TRIPWIRE_AIRFLOW_URL. The DAG run's conf is this
# template ("{rows}" alone keeps the number a number); without `conf=` it would be the
# flow's parameters. The DAG run's id is the run's name; a retry is a new DAG run, <run>-a2.
# The user and password come from the worker's environment, never from the spec.
@target(
    "airflow:///load_day",
    conf={"day": "{day}", "rows": "{rows}"},
    username_env="AIRFLOW_USERNAME",
    password_env="AIRFLOW_PASSWORD",
)
@trigger(event="day_closed", retries=1)
def load_day_on_airflow(day: str = "", rows: int = 1000) -> None: ...
