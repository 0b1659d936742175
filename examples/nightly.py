"""On a clock: a nightly rebuild that gets its tick, and an hourly check.

Each tick runs once, whichever worker sees it; ticks missed while no worker ran
follow `catchup`. Inside the run, `scheduled_at` (or `current.scheduled_at`) is
the tick, not the time the run happened to start.

    tripwire sensors status nightly_rebuild.schedule   # the next tick
"""

from datetime import UTC, datetime

from triggers import schedule, trigger


@trigger(event="rebuild_requested")  # stacks: also on demand, with the same flow
@schedule(cron="0 2 * * *", tz="Europe/Berlin", catchup="latest")
def nightly_rebuild(scheduled_at: datetime | None = None, table: str = "sales") -> None:
    when = scheduled_at or datetime.now(UTC)
    print(f"rebuilding {table} as of {when.isoformat()}")


@schedule(cron="@hourly", catchup="none", parameters={"hour": "$schedule.time"})
def hourly_check(hour: str = "") -> None:
    print(f"checking the hour starting {hour}")


if __name__ == "__main__":
    nightly_rebuild()  # outside a run: plain Python, scheduled_at is None
    hourly_check()
