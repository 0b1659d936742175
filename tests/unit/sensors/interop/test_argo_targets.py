"""Argo trigger actions and parameters brought over: argoWorkflow, k8s (Workflows and Jobs),
http and log triggers as tripwire targets, parameters as flow parameters."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.fixtures.argo import (
    HTTP_SENSOR,
    JOB_SENSOR,
    WORKFLOW_SENSOR,
    dependency,
    only,
    refusal,
    texts,
    translated,
    with_dependencies,
)
from triggers.loader import load_file

# --- parameters and targets -------------------------------------------------------------


def test_a_workflow_of_a_template_becomes_an_argo_target_with_its_arguments() -> None:
    done = translated(WORKFLOW_SENSOR)
    [flow] = done.flows
    assert flow.name == "webhook_workflow_trigger"
    assert flow.target == "argo://argo-events/print-message"
    assert flow.target_options == {
        "parameters": {
            "message": "{message}",
            "greeting": "hi{greeting}",
            "fixed": "{{{{workflow.name}}}}",
        },
        "labels": {
            "events.argoproj.io/sensor": "webhook",
            "events.argoproj.io/trigger": "webhook-workflow-trigger",
            "team": "data",
        },
    }
    # Each argument comes from its dependency's event; a dependency that may not take part
    # leaves the template's value, as in Argo; `value` is the default
    assert {d.dep: d.parameters for d in only(done).dependencies} == {
        "test_dep": {"message": "$.message"},
        "other_dep": {"greeting": "$.name"},
    }
    assert {p.name: p.default for p in flow.parameters} == {
        "message": "hello world",
        "greeting": "nobody",
    }
    assert any("lacks the key" in t for t in texts(done, "differs"))
    assert any("'webhook-': tripwire names it after the run" in t for t in texts(done, "dropped"))


def test_a_parameter_of_a_dependency_every_fire_has_is_required() -> None:
    done = translated(WORKFLOW_SENSOR.replace("test-dep || other-dep", "test-dep && other-dep"))
    [flow] = done.flows
    [message] = [p for p in flow.parameters if p.name == "message"]
    assert message.required  # a missing key is a trigger failure and no run, as in Argo


def test_a_parameter_from_the_event_context_reads_the_event_attribute() -> None:
    done = translated(
        WORKFLOW_SENSOR.replace("dataKey: body.message", "contextKey: id").replace(
            "dataKey: body.name", "contextKey: subject"
        )
    )
    assert {d.dep: d.parameters for d in only(done).dependencies} == {
        "test_dep": {"message": "$event.id"},
        "other_dep": {"greeting": "$event.name"},
    }


def test_a_simple_data_template_reads_like_a_data_key_and_says_how_it_differs() -> None:
    done = translated(
        WORKFLOW_SENSOR.replace(
            "dataKey: body.message", 'dataTemplate: "{{ .Input.body.message }}"'
        )
    )
    assert dependency(done, "test_dep").parameters == {"message": "$.message"}
    assert any("dataTemplate is read as dataKey" in t for t in texts(done, "differs"))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('dataTemplate: "{{ .Input.body.message | upper }}"', "Go template beyond"),
        ("contextKey: type", "event-source metadata"),
        ("contextTemplate: '{{ .Input.id }}'", "contextTemplate"),
        ("dataKey: body.items.#", "gjson's '#'"),
    ],
)
def test_a_parameter_source_tripwire_cannot_read_refuses_the_trigger(
    source: str, reason: str
) -> None:
    done = translated(WORKFLOW_SENSOR.replace("dataKey: body.message", source))
    assert reason in refusal(done)


def test_a_parameter_without_a_key_or_a_value_is_the_whole_event_and_refused() -> None:
    done = translated(WORKFLOW_SENSOR.replace("                dataKey: body.message\n", ""))
    assert "whole event" in refusal(done)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            ("workflowTemplateRef:\n                  name: print-message", "entrypoint: main"),
            "sets entrypoint",
        ),
        (("operation: submit", "operation: resubmit"), "does not resubmit existing workflows"),
        (
            ("spec.arguments.parameters.0.value", "spec.templates.0.container.image"),
            "not the value of an argument",
        ),
        (
            ("name: print-message", "name: print-message\n                  clusterScope: true"),
            "ClusterWorkflowTemplate",
        ),
    ],
)
def test_a_workflow_tripwire_cannot_submit_exactly_is_refused(
    change: tuple[str, str], reason: str
) -> None:
    done = translated(WORKFLOW_SENSOR.replace(*change))
    assert reason in refusal(done)


def test_an_inline_workflow_is_refused_with_the_fix() -> None:
    # Argo's special-workflow-trigger example writes the Workflow's templates inline
    done = translated("""
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata:
          name: special-workflow-trigger
        spec:
          template:
            serviceAccountName: operate-workflow-sa
          dependencies:
            - name: test-dep
              eventSourceName: webhook
              eventName: example
          triggers:
            - template:
                name: argo-workflow-trigger
                argoWorkflow:
                  operation: submit
                  source:
                    resource:
                      apiVersion: argoproj.io/v1alpha1
                      kind: Workflow
                      metadata:
                        name: special-trigger
                      spec:
                        entrypoint: print-message
                        templates:
                          - name: print-message
                            container:
                              image: busybox
    """)
    assert "argo:// submits a WorkflowTemplate" in refusal(done)


def test_a_k8s_trigger_creating_a_workflow_becomes_an_argo_target() -> None:
    text = WORKFLOW_SENSOR.replace(
        "argoWorkflow:\n          operation: submit", "k8s:\n          operation: create"
    )
    assert translated(text).flows[0].target == "argo://argo-events/print-message"


def test_a_job_becomes_a_k8s_target_whose_flow_runs_the_containers_command(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.txt"
    text = JOB_SENSOR.replace("PYTHON", sys.executable).replace("OUT", str(out))
    done = translated(text)
    [flow] = done.flows
    assert (flow.target, only(done).retries, only(done).timeout.total_seconds()) == (
        "k8s://batch",
        2,
        600,
    )
    assert flow.target_options == {
        "image": "registry.example/hello:1",
        "cpu": "2",
        "memory": "4Gi",
        "env": {"MODE": "fast"},
        "service_account": "runner",
        "labels": {
            "events.argoproj.io/sensor": "jobs",
            "events.argoproj.io/trigger": "k8s-job",
            "app": "hello",
        },
    }
    # When the flow runs (as it would in the Job's pod), with a value that is not text
    assert done.source is not None
    written = tmp_path / "flows.py"
    written.write_text(done.source)
    load_file(written).k8s_job(name=42)
    # Then the command ran with the parameter put before the arg, as text
    assert out.read_text() == "42hello"


@pytest.mark.parametrize("key", ["subprocess", "_text", "json", "current", "print", "Any"])
def test_a_parameter_named_like_a_name_the_flow_body_uses_does_not_shadow_it(
    key: str, tmp_path: Path
) -> None:
    # Given a parameter whose key is a name the generated file or body uses
    out = tmp_path / "out.txt"
    text = (
        JOB_SENSOR.replace("PYTHON", sys.executable)
        .replace("OUT", str(out))
        .replace("dataKey: body.name", f"dataKey: body.{key}")
    )
    done = translated(text)
    [flow] = done.flows
    [parameter] = flow.parameters
    assert parameter.name not in {"subprocess", "_text", "json", "current", "print", "Any"}
    # When the flow runs, the body still calls what it names
    assert done.source is not None
    written = tmp_path / "flows.py"
    written.write_text(done.source)
    getattr(load_file(written), flow.name)(**{parameter.name: "x"})
    assert out.read_text() == "xhello"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            (
                "restartPolicy: Never",
                "restartPolicy: Never\n                    volumes: [{name: v}]",
            ),
            "sets volumes",
        ),
        (("value: fast", "valueFrom: {secretKeyRef: {name: s, key: k}}"), "secrets"),
        (
            (
                'cpu: "2"',
                'cpu: "2"\n' + " " * 26 + "requests:\n" + " " * 28 + 'cpu: "1"',
            ),
            "requests equal to its limits",
        ),
        (("kind: Job", "kind: Deployment"), "creates a Deployment"),
        (("args: [OUT, hello]", 'args: ["$(MODE)"]'), "$(VAR)"),
        (("operation: create", "operation: delete"), "only creates objects"),
    ],
)
def test_a_job_tripwire_cannot_run_exactly_is_refused(change: tuple[str, str], reason: str) -> None:
    assert reason in refusal(translated(JOB_SENSOR.replace(*change)))


def test_a_job_without_a_command_is_refused_since_its_entrypoint_is_unknown() -> None:
    # Given the Job without its command: the container would run its image's entrypoint
    done = translated(re.sub(r" +command:\n( +- .*\n)+", "", JOB_SENSOR))
    assert "needs an image and a command" in refusal(done)


def test_an_http_trigger_becomes_an_http_target_with_the_body_argo_builds() -> None:
    done = translated(HTTP_SENSOR)
    [flow] = done.flows
    assert flow.target == "https://example.com/hook"
    options = flow.target_options
    assert options["success"] == list(range(100, 600))  # Argo takes any answer
    assert options["body"] == {"message": "{message}", "stats": {"count": "{count}"}}
    assert options["headers"] == {"X-Team": "data"}
    assert (options["retries"], options["timeout"]) == (0, 60.0)  # Argo: one try, 60 s
    types = {p.name: p.type["t"] for p in flow.parameters}
    assert types == {"message": "str", "count": "any"}  # text, or raw JSON with useRawData


def test_an_http_triggers_status_policy_and_retry_strategy_carry_over() -> None:
    text = HTTP_SENSOR.replace(
        "  triggers:\n    - template:",
        "  triggers:\n    - policy:\n        status:\n          allow: [200, 201]\n"
        "      retryStrategy:\n        steps: 3\n        duration: 2s\n      template:",
    )
    done = translated(text)
    [flow] = done.flows
    assert flow.target_options["success"] == [200, 201]
    assert (flow.target_options["retries"], flow.target_options["backoff"]) == (2, 2.0)
    assert only(done).retries == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (("method: POST", "method: GET"), "sends POST or PUT"),
        (
            (
                "headers:\n            X-Team: data",
                "secureHeaders:\n            - name: Authorization\n              valueFrom:\n"
                "                secretKeyRef: {name: s, key: k}",
            ),
            "sets secureHeaders",
        ),
        (("dest: message", "dest: items.0"), "not a path of plain keys"),
    ],
)
def test_an_http_trigger_tripwire_cannot_call_exactly_is_refused(
    change: tuple[str, str], reason: str
) -> None:
    assert reason in refusal(translated(HTTP_SENSOR.replace(*change)))


@pytest.mark.parametrize("kind", ["awsLambda", "kafka", "nats", "slack", "custom", "openWhisk"])
def test_trigger_kinds_without_a_tripwire_target_are_refused(kind: str) -> None:
    done = with_dependencies(
        """
        - name: d
          eventSourceName: w
          eventName: e
        """,
        f"""
          triggers:
            - template:
                name: other
                {kind}:
                  payload: []
        """,
    )
    assert f"{kind} triggers have no tripwire target" in refusal(done)


def test_a_log_trigger_becomes_a_local_flow_that_prints_its_events() -> None:
    done = with_dependencies("""
        - name: d
          eventSourceName: w
          eventName: e
    """)
    [flow] = done.flows
    assert flow.target == "local://" and flow.parameters == ()
    assert done.source is not None and "for event in current.events:" in done.source
