"""The Prefect side of the example: the flow ``load-day``, served as the deployment
``load-day/nightly`` by this process (no work pool needed). It runs in Prefect's
environment, not tripwire's (hence the ``_``: tripwire does not load this file).

    pip install 'prefect>=3.4,<4'
    prefect server start                                  # the API at http://127.0.0.1:4200/api
    PREFECT_API_URL=http://127.0.0.1:4200/api python _serve.py
"""

import time

from prefect import flow


@flow(log_prints=True)
def load_day(day: str, rows: int = 1000, pause: float = 0.0) -> int:
    """Load a day's rows; ``pause`` seconds per row make it slow enough to watch (or abort)."""
    if rows < 0:
        raise ValueError(f"rows must be 0 or more, not {rows}")
    for _ in range(rows):
        time.sleep(pause)
    print(f"loaded {rows} rows of {day}")
    return rows


if __name__ == "__main__":
    load_day.serve(name="nightly")
