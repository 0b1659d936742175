"""A Metaflow flow, unchanged, deployed by tests/integration/test_metaflow_flows.py."""

from metaflow import FlowSpec, JSONType, Parameter, step, trigger

from triggers import current as tripwire


@trigger(event="mf.single")
class SingleFlow(FlowSpec):
    """One event without parameters: payload fields fill the parameters of the same name."""

    table = Parameter("table", required=True)
    rows = Parameter("rows", default=1, type=int)
    options = Parameter("options", default={"mode": "full"}, type=JSONType)

    @step
    def start(self):
        self.seen = {"table": self.table, "rows": self.rows, "options": self.options}
        self.tripwire_run = tripwire.run_name
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SingleFlow()
