"""@target: which targets and options are accepted, and how templates are filled."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from triggers import DeclarationError, resources, target, trigger
from triggers.declarations import flow_spec
from triggers.targets import HttpTarget, parse_target, render


def test_a_flow_carries_its_target_and_options_to_the_engine() -> None:
    @target("command://", argv=["python", "flow.py", "run", "--latest", "{latest}"])
    @trigger(event="data_updated")
    def flow(latest: str = "") -> None: ...

    spec = flow_spec(flow)
    assert spec.target == "command://"
    assert spec.target_options == {"argv": ["python", "flow.py", "run", "--latest", "{latest}"]}


def test_a_flow_without_a_target_runs_locally() -> None:
    @trigger(event="data_updated")
    def flow() -> None: ...

    assert (flow_spec(flow).target, flow_spec(flow).target_options) == ("local://", {})


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("ftp://x", {}, "the scheme must be one of local://, command://, http://, https://"),
        ("command://", {}, "argv: Field required"),
        ("command://", {"argv": ["run", "{nope}"]}, "unknown placeholder(s) ['nope']"),
        ("command://", {"argv": ["{day.__class__}"]}, "only plain {name} placeholders"),
        ("command://", {"argv": ["{day!r}"]}, "only plain {name} placeholders"),
        ("command://", {"argv": ["{day"]}, "expected '}' before end of string"),
        ("command://", {"shell": True, "argv": ["x"]}, "shell: Extra inputs are not permitted"),
        ("https://", {}, "has no host"),
        ("https://ci/run", {"success": [999]}, "status codes (100-599)"),
        ("https://ci/run", {"timeout": "soon"}, "duration='soon' is not a duration"),
        ("local://", {"argv": ["x"]}, "takes no options"),
    ],
)
def test_a_bad_target_fails_at_decoration_saying_what_is_wrong(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeclarationError, match=re.escape(message)):

        @target(url, **options)
        def flow(day: str = "") -> None: ...


def test_values_fill_argv_items_as_data_never_as_code() -> None:
    argv = ["tool", "--day", "{day}", "--flag={day}", "{{literal}}"]
    hostile = '"; rm -rf / #{run_name}'
    assert render(argv, {"day": hostile, "run_name": "r"}, typed=False) == [
        "tool",
        "--day",
        hostile,
        f"--flag={hostile}",
        "{literal}",
    ]


def test_a_body_template_keeps_json_types_of_whole_values() -> None:
    body = {"rows": "{rows}", "label": "rows={rows}", "all": "{parameters}", "n": 1}
    values = {"rows": 3, "parameters": {"rows": 3}}
    assert render(body, values, typed=True) == {
        "rows": 3,
        "label": "rows=3",
        "all": {"rows": 3},
        "n": 1,
    }


def test_http_options_take_durations_like_the_rest_of_tripwire() -> None:
    spec = parse_target("https://ci.example/run", {"timeout": "10s", "backoff": "500ms"}, [])
    model = spec.model()
    assert isinstance(model, HttpTarget)
    assert (model.timeout.total_seconds(), model.backoff.total_seconds()) == (10, 0.5)
    assert (spec.options["timeout"], spec.options["backoff"]) == (10.0, 0.5)  # as runs carry them


def test_resources_size_a_kubernetes_pod_as_metaflow_says_them() -> None:
    @resources(cpu=2, memory=4096, gpu=1)
    @target("k8s://data", image="flows:1", memory="8Gi")
    @trigger(event="features_ready")
    def train() -> None: ...

    # Metaflow's megabytes become a quantity; the target's own memory wins
    assert flow_spec(train).target_options == {
        "cpu": "2",
        "memory": "8Gi",
        "gpu": 1,
        "image": "flows:1",
    }
    with pytest.raises(DeclarationError, match="memory='lots' must be a number or a Kubernetes"):
        resources(memory="lots")(train)


@pytest.mark.parametrize(
    "url", ["k8s://", "k8s://Data", "k8s://data/extra", "argo://data", "argo://data/a/b"]
)
def test_a_cluster_target_names_a_namespace_and_for_argo_a_template(url: str) -> None:
    with pytest.raises(DeclarationError, match=r"write (k8s://data|argo://data/nightly-etl)"):
        parse_target(url, {}, [])


def test_a_trigger_can_run_its_runs_elsewhere_than_its_flow() -> None:
    @target("command://", argv=["report", "{day}"])
    @trigger(event="nightly")
    @trigger(event="big_day", target={"url": "k8s://gpu", "image": "flows:1"}, name="big")
    def report(day: str = "") -> None: ...

    spec = flow_spec(report)
    by_name = {t.name: t for t in spec.triggers}
    assert by_name["trigger"].target is None  # the flow's: command://
    assert (by_name["big"].target, by_name["big"].target_options) == (
        "k8s://gpu",
        {"image": "flows:1"},
    )
    with pytest.raises(DeclarationError, match="unknown placeholder"):

        @trigger(event="x", target={"url": "command://", "argv": ["{nope}"]})
        def other() -> None: ...


def test_a_run_request_goes_to_its_triggers_target_else_its_flows() -> None:
    from datetime import UTC, datetime

    from sensors.core.sensor import build_sensors

    @target("command://", argv=["report", "{day}"])
    @trigger(event="nightly")
    @trigger(event="big_day", target="https://ci.example/run", name="big")
    def report(day: str = "") -> None: ...

    sensors = build_sensors(
        [flow_spec(report)], project="p", domain="d", deployed_at=datetime.now(UTC)
    )
    heads = {s.trigger.name: json.loads(s.request_head + b"}") for s in sensors}
    assert heads["trigger"]["target"] == "command://"
    assert heads["big"]["target"] == "https://ci.example/run"
