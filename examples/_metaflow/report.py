"""Runs when tripwire's run of RefreshFlow succeeds, as ``@trigger_on_finish`` does on Argo:
tripwire publishes ``metaflow.sales.<branch>.RefreshFlow.end`` when that run succeeds."""

from metaflow import FlowSpec, current, project, step, trigger_on_finish


@project(name="sales")
@trigger_on_finish(flow="RefreshFlow")
class ReportFlow(FlowSpec):
    @step
    def start(self):
        trigger = current.trigger  # Metaflow's: the upstream run, in local mode too
        print("after", trigger.run.pathspec if trigger and trigger.run else "a run elsewhere")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ReportFlow()
