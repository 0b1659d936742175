"""A Metaflow flow, unchanged, deployed by tests/integration/test_metaflow_flows.py."""

from metaflow import FlowSpec, step, trigger


@trigger(
    events=["mf.reset.a", "mf.reset.b"],
    options={"reset_at": {"cron": "0 0 * * *", "timezone": "UTC"}},
)
class ResetFlow(FlowSpec):
    """Both events of one day: an event from before midnight (UTC) no longer counts."""

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ResetFlow()
