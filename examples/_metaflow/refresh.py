"""A Metaflow flow, as Metaflow users write it: tripwire deploys it unchanged.

    tripwire dev examples/_metaflow
    tripwire publish table_loaded '{"table_name": "sales", "rows": 1234}'

``table`` is required, so a ``table_loaded`` event without ``table_name`` does not count.
"""

from metaflow import FlowSpec, Parameter, project, step, trigger


@project(name="sales")
@trigger(event={"name": "table_loaded", "parameters": {"table": "table_name", "rows": "rows"}})
class RefreshFlow(FlowSpec):
    table = Parameter("table", required=True)
    rows = Parameter("rows", default=0, type=int)

    @step
    def start(self):
        print(f"refreshing {self.table} ({self.rows} rows)")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    RefreshFlow()
