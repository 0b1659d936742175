"""A faust app beside tripwire: it announces fresh data, then follows the run it started.

The agent `announce` takes loads of sales data and publishes the tripwire event
`data_updated` for each, through the app's own producer. tripwire runs `refresh_report`
(examples/fresh_data.py) on it. The agent `follow` reads the runs' lifecycle events as
typed `RunEvent`s, and says how each run of `refresh_report` ended.

    tripwire dev examples/          # a broker, an engine and the example flows; then, in the
                                    # same folder, with pip install 'tripwire[faust]':
    faust -A examples._faust.sales_loader worker -l info
    faust -A examples._faust.sales_loader send @announce \
        '{"id": "load-1", "table": "sales", "rows": 1234, "day": "2026-11-23"}'

The folder's name starts with `_` so that `tripwire dev examples/` does not import this
file: it needs the faust extra, and the flows do not.
"""

from __future__ import annotations

import faust

from triggers.faust import EventPublisher, RunEvent, broker_settings, run_events_topic

app = faust.App("sales-loader", **broker_settings())
publisher = EventPublisher(app)


class Load(faust.Record):
    """New rows of a table, from one load."""

    id: str
    table: str
    rows: int
    day: str


@app.agent(value_type=Load)
async def announce(loads: faust.StreamT[Load]) -> None:
    async for load in loads:
        # An id from the load: if faust delivers the load again, tripwire sees the same
        # event again and starts no second run.
        event_id = await publisher.send(
            "data_updated",
            {"table": load.table, "rows": load.rows, "day": load.day},
            id=f"{load.id}:data_updated",
        )
        print(f"announced load {load.id}: {load.rows} rows of {load.table}, event {event_id}")


@app.agent(run_events_topic(app))
async def follow(runs: faust.StreamT[RunEvent]) -> None:
    async for run in runs:
        if run.flow == "refresh_report" and run.finished:
            print(f"run {run.run_name} of {run.flow} {run.phase} at {run.occurred_at:%H:%M:%S}")


if __name__ == "__main__":
    app.main()
