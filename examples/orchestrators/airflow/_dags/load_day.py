"""Airflow's side of the example: the DAG ``load_day``, which tripwire triggers with the day
and the rows in its conf. It runs in Airflow's environment, not tripwire's: this folder
(``_dags``, which ``tripwire dev`` leaves out) is Airflow's DAGs folder.

    pip install 'apache-airflow>=3.1,<4'
    AIRFLOW__CORE__DAGS_FOLDER=$PWD/_dags airflow standalone      # UI and API on :8080
"""

import time

from airflow.sdk import dag, task


@dag(
    schedule=None,  # only triggered: by tripwire, through the REST API
    params={"day": "", "rows": 1000, "pause": 0.0},  # a DAG run's conf overrides them
    is_paused_upon_creation=False,  # Airflow pauses a new DAG otherwise; its runs would wait
    tags=["tripwire"],
)
def load_day() -> None:
    @task
    def check(params: dict | None = None) -> int:
        rows = int((params or {})["rows"])
        if rows < 0:
            raise ValueError(f"rows must be 0 or more, not {rows}")
        return rows

    @task
    def load(rows: int, params: dict | None = None) -> str:
        """Load a day's rows; ``pause`` seconds per row make it slow enough to watch (or abort)."""
        day, pause = (params or {})["day"], float((params or {})["pause"])
        for _ in range(rows):
            time.sleep(pause)
        return f"loaded {rows} rows of {day}"

    load(check())


load_day()
