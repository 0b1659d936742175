"""Metaflow's own decorators read through Metaflow's API, with the meaning its Argo
Workflows integration gives them (sensors.interop.metaflow)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sensors.core.filters import rejection
from sensors.interop.metaflow import METAFLOW_WINDOW, end_event, metaflow_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from triggers.current import RunContext
from triggers.envelope import Envelope, make_envelope
from triggers.errors import DeclarationError
from triggers.loader import load_file
from triggers.metaflow_run import metaflow_argv
from triggers.spec import FlowSpec

_FLOW = """
from metaflow import FlowSpec, Parameter, project, step, trigger, trigger_on_finish

{decorators}
class {name}(FlowSpec):
    table = Parameter("table", required=True)
    rows = Parameter("rows", default=1, type=int)
    day = Parameter("day", default="today")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    {name}()
"""


def flows(tmp_path: Path, decorators: str, name: str = "LoadFlow") -> list[FlowSpec]:
    file = tmp_path / f"{name.lower()}_{abs(hash(decorators))}.py"
    file.write_text(_FLOW.format(decorators=textwrap.dedent(decorators).strip(), name=name))
    return metaflow_flows(load_file(file), file)


@pytest.fixture(autouse=True)
def _user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "ann")
    monkeypatch.delenv("METAFLOW_OWNER", raising=False)


def test_one_event_without_parameters_fills_every_parameter_by_name(tmp_path: Path) -> None:
    [flow] = flows(tmp_path, '@trigger(event="orders")')
    [trigger] = flow.triggers
    [dep] = trigger.dependencies
    assert dep.name == "orders" and dep.parameters == {
        "table": "table",
        "rows": "rows",
        "day": "day",
    }
    # the required parameter's field must be there for the event to count
    assert [(f.path, f.op, f.value) for f in dep.filters] == [('$["table"]', "exists", True)]
    assert trigger.within == METAFLOW_WINDOW and trigger.reset_at is None
    assert {p.name: (p.required, p.default) for p in flow.parameters} == {
        "table": (True, None),
        "rows": (False, 1),
        "day": (False, "today"),
    }
    assert flow.entrypoint.metaflow is not None and flow.entrypoint.metaflow.flow == "LoadFlow"


def test_two_events_without_parameters_fill_none(tmp_path: Path) -> None:
    [flow] = flows(tmp_path, '@trigger(events=["orders", "quality"])')
    assert [d.parameters for d in flow.triggers[0].dependencies] == [{}, {}]


def test_the_dict_and_the_list_of_strings_and_pairs_forms(tmp_path: Path) -> None:
    [flow] = flows(
        tmp_path,
        """
        @trigger(events=[
            {"name": "orders", "parameters": {"table": "table_name"}},
            {"name": "quality", "parameters": ["rows", ("day", "date")]},
        ])
        """,
    )
    orders, quality = flow.triggers[0].dependencies
    assert orders.parameters == {"table": "table_name"}
    assert [f.path for f in orders.filters] == ['$["table_name"]']
    assert quality.parameters == {"rows": "rows", "day": "date"} and quality.filters == ()


@pytest.mark.parametrize(
    ("decorators", "problem"),
    [
        (
            """@trigger(events=[{"name": "a", "parameters": {"table": "x"}},
                                {"name": "b", "parameters": {"table": "y"}}])""",
            "parameter 'table' is mapped by two events",
        ),
        ('@trigger(event={"name": "a", "parameters": {"nope": "x"}})', "does not have"),
        ('@trigger(event={"name": "a", "parameters": {"table": "a.b"}})', "payload key 'a.b'"),
        ('@trigger(event="bad name")', "event name 'bad name'"),
        ('@trigger(events=["a", "a"])', "Duplicate event names"),
        ('@trigger(event="a", events=["b"])', "only one of *event* or *events*"),
        ('@trigger(event="a", options={"reset_at": {"timezone": "UTC"}})', "needs a cron"),
        ('@trigger(event="a", options={"reset_at": {"cron": "99 * * * *"}})', "cron"),
        (
            '@trigger_on_finish(flow={"name": "Up", "project": "shop"})',
            "incomplete project information",
        ),
    ],
)
def test_what_metaflow_refuses_is_a_deploy_error_that_names_the_problem(
    tmp_path: Path, decorators: str, problem: str
) -> None:
    with pytest.raises(DeclarationError) as caught:
        flows(tmp_path, decorators)
    # Located as a tripwire flow's errors are: the file, the class's first decorator, the flow
    refused = caught.value
    assert refused.path is not None and Path(refused.path).parent == tmp_path.resolve()
    assert str(refused).startswith(f"{refused.path}:4: flow 'LoadFlow': ")
    assert problem in str(refused)


def test_reset_at_is_a_cron_in_its_time_zone(tmp_path: Path) -> None:
    [flow] = flows(
        tmp_path,
        """@trigger(events=["a", "b"],
                    options={"reset_at": {"cron": "0 6 * * *", "timezone": "Europe/Paris"}})""",
    )
    reset = flow.triggers[0].reset_at
    assert reset is not None and (reset.cron, reset.tz) == ("0 6 * * *", "Europe/Paris")


def test_trigger_on_finish_waits_for_the_end_event_metaflow_names(tmp_path: Path) -> None:
    [flow] = flows(
        tmp_path,
        """
        @project(name="shop")
        @trigger_on_finish(flows=["Up", "other.prod.Side"])
        """,
    )
    [trigger] = flow.triggers
    up, side = trigger.dependencies
    assert up.name == "metaflow.shop.user.ann.Up.end"
    assert [(f.path, f.value) for f in up.filters] == [
        ('$["project_name"]', "shop"),
        ('$["branch_name"]', "user.ann"),
    ]
    assert side.name == "metaflow.other.prod.Side.end" and side.parameters == {}
    run = flow.entrypoint.metaflow
    assert run is not None and (run.project, run.branch, run.owner) == ("shop", "user.ann", "ann")
    assert run.end_event == "metaflow.shop.user.ann.LoadFlow.end"


def test_a_production_project_runs_with_metaflows_options(tmp_path: Path) -> None:
    [flow] = flows(tmp_path, '@project(name="shop", branch="night", production=True)')
    run = flow.entrypoint.metaflow
    assert run is not None
    assert (run.branch, run.given_branch, run.production, run.owner) == (
        "prod.night",
        "night",
        True,
        None,
    )
    assert flow.triggers == ()  # deployed all the same: runs can be created by hand


def test_one_flow_per_file(tmp_path: Path) -> None:
    file = tmp_path / "two.py"
    file.write_text(
        _FLOW.format(decorators="", name="A")
        + _FLOW.format(decorators="", name="B").replace("from metaflow", "from metaflow", 1)
    )
    with pytest.raises(DeclarationError, match="a file of its own"):
        metaflow_flows(load_file(file), file)


def test_the_end_event_is_metaflows_with_the_end_tasks_pathspec_as_its_id(tmp_path: Path) -> None:
    [flow] = flows(tmp_path, '@project(name="shop")')
    at = datetime(2026, 12, 4, 10, tzinfo=UTC)
    run = _succeeded(flow, at, {"metaflow": {"run_id": "7", "end_task": "LoadFlow/7/end/3"}})
    event = end_event(run, at)
    assert event is not None
    name, event_id, payload = event
    assert (name, event_id) == ("metaflow.shop.user.ann.LoadFlow.end", "LoadFlow/7/end/3")
    assert payload["pathspec"] == "LoadFlow/7/end/3" and payload["task_id"] == "3"
    assert (payload["flow_name"], payload["run_id"], payload["step_name"]) == (
        "LoadFlow",
        "7",
        "end",
    )
    assert payload["project_flow_name"] == "shop.user.ann.LoadFlow"
    assert payload["timestamp"] == int(at.timestamp()) and payload["auto-generated-by-metaflow"]
    plain = run.model_copy(update={"entrypoint": {"function": "f", "path": "/x.py"}})
    assert end_event(plain, at) is None


def test_target_and_resources_place_a_metaflow_flows_runs(tmp_path: Path) -> None:
    [flow] = flows(
        tmp_path,
        """
        from triggers import resources, target

        @target("k8s://data", image="registry/flows:1")
        @resources(cpu=2, memory=4096)
        @trigger(event="orders")
        """,
    )
    assert flow.target == "k8s://data"
    assert flow.target_options == {"cpu": "2", "memory": "4096Mi", "image": "registry/flows:1"}


def test_a_command_target_is_checked_against_metaflows_parameters(tmp_path: Path) -> None:
    [flow] = flows(
        tmp_path,
        """
        from triggers import target

        @target("command://", argv=["python", "load.py", "run", "--table", "{table}"])
        """,
    )
    assert flow.target == "command://"
    with pytest.raises(DeclarationError, match=r"LoadFlow.*nope"):
        flows(
            tmp_path,
            """
            from triggers import target

            @target("command://", argv=["run", "{nope}"])
            """,
        )


def test_a_required_field_named_like_a_jsonpath_word_still_counts(tmp_path: Path) -> None:
    # "where" is a reserved word of JSONPath, and "my-p" no payload key Metaflow allows in a
    # mapping: the default mapping reads them all the same, as Metaflow's sensor does
    file = tmp_path / "odd.py"
    file.write_text(
        _FLOW.replace(
            'table = Parameter("table", required=True)',
            'where = Parameter("where", '
            'required=True)\n    dashed = Parameter("my-p", default="x")',
        ).format(decorators='@trigger(event="orders")', name="OddFlow")
    )
    [flow] = metaflow_flows(load_file(file), file)
    [dep] = flow.triggers[0].dependencies
    assert dep.parameters is not None and dep.parameters["my-p"] == "my-p"

    def rejects(payload: dict[str, object]) -> str | None:
        event = Envelope(name="orders", id="1", source="s", time=None, payload=payload)
        return rejection(dep, event, datetime.now(UTC))

    assert rejects({"where": "eu"}) is None and rejects({"other": 1}) is not None


def test_a_namespaced_event_name_resolves_under_the_project(tmp_path: Path) -> None:
    decorators = """
        from metaflow import namespaced_event_name

        @project(name="shop")
        @trigger(event=namespaced_event_name("ready"))
        """
    [flow] = flows(tmp_path, decorators)
    assert flow.triggers[0].dependencies[0].name == "mfns.shop.user.ann.ready"
    [again] = flows(tmp_path, decorators)  # the same module, read a second time
    assert again == flow


def test_decorators_that_need_a_datastore_are_left_alone(tmp_path: Path) -> None:
    [flow] = flows(
        tmp_path,
        """
        from metaflow import pypi_base

        @pypi_base(packages={"pandas": "2.2.0"})
        @trigger(event="orders")
        """,
    )
    assert [d.name for d in flow.triggers[0].dependencies] == ["orders"]


def test_a_user_branch_named_after_an_e_mail_publishes_its_end_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAFLOW_USER", "ann.lee+ci@corp.com")
    monkeypatch.setenv("USER", "ann.lee+ci@corp.com")
    [flow] = flows(tmp_path, '@project(name="shop")')
    run = flow.entrypoint.metaflow
    assert run is not None
    assert run.end_event == "metaflow.shop.user.ann.lee+ci@corp.com.LoadFlow.end"
    assert make_envelope(run.end_event, {})[0].name == run.end_event


def test_only_the_end_events_of_trigger_on_finish_give_metaflows_trigger_option(
    tmp_path: Path,
) -> None:
    [flow] = flows(tmp_path, '@trigger_on_finish(flow="Up")')
    mf = flow.entrypoint.metaflow
    assert mf is not None and mf.upstream_events == ("metaflow.Up.end",)
    (tmp_path / ".metaflow" / "Up" / "5").mkdir(parents=True)
    end = {"flow_name": "Up", "run_id": "5"}
    file = tmp_path / "context.json"
    events = [
        {"name": "metaflow.Up.end", "id": "Up/5/end/2", "payload": end},
        {"name": "metaflow.Other.end", "id": "Other/5/end/2", "payload": end},
    ]
    context = {"run_name": "r", "project": "p", "domain": "d", "flow": "LoadFlow"}
    file.write_text(json.dumps({**context, "parameters": {"table": "t"}, "events": events}))
    context = RunContext.load(file)
    argv = metaflow_argv("load.py", mf, context, tmp_path / "id", tmp_path)
    assert argv[argv.index("--trigger") + 1] == "Up/5" and argv.count("--trigger") == 1
    plain = mf.model_copy(update={"upstream_events": ()})
    assert "--trigger" not in metaflow_argv("load.py", plain, context, tmp_path / "id", tmp_path)


def test_no_end_event_without_the_end_tasks_pathspec(tmp_path: Path) -> None:
    [flow] = flows(tmp_path, "")
    at = datetime(2026, 12, 4, 10, tzinfo=UTC)
    run = _succeeded(flow, at, {"metaflow": {"run_id": "7", "end_task": None}})
    assert end_event(run, at) is None


def _succeeded(flow: FlowSpec, at: datetime, outputs: dict[str, object]) -> RunRecord:
    return RunRecord.model_validate(
        {
            "project": "p",
            "domain": "d",
            "name": "loadflow-1",
            "flow": flow.name,
            "target": "local://",
            "entrypoint": flow.entrypoint.model_dump(),
            "parameters": {},
            "events": [],
            "phase": WorkflowPhase.SUCCEEDED,
            "created_at": at,
            "updated_at": at,
            "outputs": outputs,
        }
    )
