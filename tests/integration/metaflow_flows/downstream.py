"""A Metaflow flow, unchanged, deployed by tests/integration/test_metaflow_flows.py."""

from metaflow import FlowSpec, current, project, step, trigger_on_finish

from triggers import current as tripwire


@project(name="shop")
@trigger_on_finish(flow="UpstreamFlow")
class DownstreamFlow(FlowSpec):
    """Runs when tripwire's run of UpstreamFlow succeeds; Metaflow's current.trigger names it."""

    @step
    def start(self):
        trigger = current.trigger
        self.upstream = trigger.run.pathspec if trigger and trigger.run else None
        self.event_names = [e.name for e in tripwire.events]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    DownstreamFlow()
