"""A Metaflow flow, unchanged, deployed by tests/integration/test_metaflow_flows.py."""

from metaflow import FlowSpec, Parameter, project, step, trigger


@project(name="shop")
@trigger(event={"name": "mf.upstream", "parameters": {"note": "note"}})
class UpstreamFlow(FlowSpec):
    note = Parameter("note", default="")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UpstreamFlow()
