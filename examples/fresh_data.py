"""Refresh a report whenever fresh data lands.

Default matching: the `data_updated` payload's `table`, `rows` and `day`
fields fill the parameters of the same names, coerced to their types.

    tripwire publish data_updated -p table=sales -p rows=1234 -p day=2026-11-23
"""

from datetime import date

from triggers import current, trigger


@trigger(event="data_updated")
def refresh_report(table: str = "sales", rows: int = 0, day: date | None = None) -> None:
    event = current.event
    print(f"run {current.run_name}: refreshing {table} for {day} ({rows} new rows)")
    if event is not None:
        print(f"triggered by {event.name} {event.id} from {event.source}")


if __name__ == "__main__":
    refresh_report(table="sales", rows=10)  # a flow is still a plain function
