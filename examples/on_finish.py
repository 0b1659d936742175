"""Run after another flow: a dashboard when the report succeeds, an alert when it fails.

`refresh_report` (examples/fresh_data.py) publishes a lifecycle event at every phase
change; these flows fire on its final one. Inside them, `current.run` is that run.

    tripwire publish data_updated -p table=sales -p rows=1234 -p day=2026-11-23
"""

from triggers import current, trigger_on_finish


@trigger_on_finish(flow="refresh_report", retries=2, retry_backoff="30s", timeout="10m")
def publish_dashboard(title: str = "Sales") -> None:
    upstream = current.run
    if upstream is not None:
        print(f"{title}: report run {upstream.name} finished {upstream.phase}")


@trigger_on_finish(flow="refresh_report", on=["FAILED", "TIMED_OUT"])
def alert_on_call() -> None:
    upstream = current.run
    if upstream is not None:
        print(f"report run {upstream.name} ended {upstream.phase}: {upstream.error}")


if __name__ == "__main__":
    publish_dashboard()  # outside a run, current.run is None: a flow is still a function
    alert_on_call()
