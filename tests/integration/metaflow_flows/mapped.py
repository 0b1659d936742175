"""A Metaflow flow, unchanged, deployed by tests/integration/test_metaflow_flows.py."""

from metaflow import FlowSpec, Parameter, step, trigger


@trigger(
    events=[
        {"name": "mf.orders", "parameters": {"table": "table_name"}},
        {"name": "mf.quality", "parameters": ["rows", ("day", "date")]},
    ]
)
class MappedFlow(FlowSpec):
    """Two events, the dict and the list forms; ``table`` is required, so an orders event
    without ``table_name`` does not count."""

    table = Parameter("table", required=True)
    rows = Parameter("rows", default=0, type=int)
    day = Parameter("day", default="unset")

    @step
    def start(self):
        self.seen = {"table": self.table, "rows": self.rows, "day": self.day}
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MappedFlow()
