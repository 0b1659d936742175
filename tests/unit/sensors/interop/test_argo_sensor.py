"""Argo Events Sensors brought over: event names, dependencies and conditions, the settings
without an equivalent, the file written, and manifests Argo itself would refuse."""

from __future__ import annotations

from datetime import time

import pytest
import yaml

from sensors.interop.argo_sensor import Options, read_manifest, translate
from tests.fixtures.argo import (
    WORKFLOW_SENSOR,
    dependency,
    only,
    refusal,
    texts,
    translated,
    with_dependencies,
    with_filters,
)
from triggers.errors import DeclarationError
from triggers.filters import TimeOfDay
from triggers.spec import FlowSpec

# --- event names and dependencies --------------------------------------------------------


def test_a_dependency_waits_for_the_event_its_event_name_names() -> None:
    done = with_dependencies("""
        - name: test-dep
          eventSourceName: webhook
          eventName: example
    """)
    dep = dependency(done)
    assert (dep.name, dep.dep, dep.parameters, dep.filters) == ("example", "test_dep", {}, ())


def test_prefix_source_names_the_event_after_its_event_source_too() -> None:
    done = with_dependencies(
        """
        - name: test-dep
          eventSourceName: webhook
          eventName: example
        """,
        prefix_source=True,
    )
    assert dependency(done).name == "webhook.example"


def test_one_event_name_from_two_event_sources_is_refused_unless_prefixed() -> None:
    deps = """
        - name: a
          eventSourceName: github
          eventName: push
        - name: b
          eventSourceName: gitlab
          eventName: push
    """
    assert "--prefix-source" in refusal(with_dependencies(deps))
    prefixed = with_dependencies(deps, prefix_source=True)
    assert [d.name for d in only(prefixed).dependencies] == ["github.push", "gitlab.push"]


def test_a_trigger_without_conditions_waits_for_every_dependency_all_within_the_window() -> None:
    done = with_dependencies("""
        - name: dep01
          eventSourceName: webhook-a
          eventName: example01
        - name: dep02
          eventSourceName: webhook-a
          eventName: example02
    """)
    trigger = only(done)
    assert [d.dep for d in trigger.dependencies] == ["dep01", "dep02"]
    assert trigger.conditions is None and trigger.within.total_seconds() == 3600
    assert any("within='1h'" in t for t in texts(done, "differs"))


def test_dashed_dependency_names_in_conditions_are_read_as_argo_reads_them() -> None:
    # Given Argo's trigger-conditions example with dashed names, written either way
    done = translated("""
        apiVersion: argoproj.io/v1alpha1
        kind: Sensor
        metadata:
          name: example
        spec:
          dependencies:
            - name: dep-01
              eventSourceName: webhook-a
              eventName: example01
            - name: dep-02
              eventSourceName: webhook-a
              eventName: example02
            - name: dep-03
              eventSourceName: webhook-b
              eventName: example03
          triggers:
            - template:
                name: trigger03
                conditions: "(dep-01 || dep_02) && dep-03"
                log: {}
    """)
    trigger = only(done)
    # Then the condition names tripwire dependencies, and holds as Argo's does
    assert trigger.conditions == "(dep_01 || dep_02) && dep_03"
    condition = trigger.condition()
    assert condition.holds({"dep_02", "dep_03"}) and not condition.holds({"dep_01", "dep_02"})


def test_a_trigger_waits_only_for_the_dependencies_its_conditions_name() -> None:
    done = with_dependencies(
        """
        - name: dep01
          eventSourceName: w
          eventName: e1
        - name: dep02
          eventSourceName: w
          eventName: e2
        """,
        """
          triggers:
            - template:
                name: trigger01
                conditions: dep02
                log: {}
        """,
    )
    assert [d.name for d in only(done).dependencies] == ["e2"]


def test_conditions_that_name_no_dependency_refuse_the_trigger() -> None:
    done = with_dependencies(
        """
        - name: dep01
          eventSourceName: w
          eventName: e1
        """,
        """
          triggers:
            - template:
                name: broken
                conditions: "dep01 && dep09"
                log: {}
        """,
    )
    assert "'dep09'" in refusal(done) and "Argo cannot start this trigger either" in refusal(done)
    assert done.source is None


def test_within_sets_how_long_events_of_several_dependencies_are_held() -> None:
    done = with_dependencies(
        """
        - name: a
          eventSourceName: w
          eventName: a
        - name: b
          eventSourceName: w
          eventName: b
        """,
        within="24h",
    )
    assert only(done).within.total_seconds() == 86400


def test_a_transform_refuses_the_triggers_of_its_dependency() -> None:
    done = with_dependencies("""
        - name: test-dep
          eventSourceName: webhook
          eventName: example
          transform:
            jq: ".body.message *= 2"
    """)
    assert "transform" in refusal(done)


# --- policies and other settings --------------------------------------------------------


def test_rate_limits_carry_over_and_settings_without_equivalent_are_listed() -> None:
    done = with_dependencies(
        """
        - name: d
          eventSourceName: w
          eventName: e
        """,
        """
          eventBusName: default
          triggers:
            - rateLimit:
                unit: Minute
                requestsPerUnit: 20
              atLeastOnce: true
              retryStrategy:
                steps: 3
              template:
                name: limited
                conditionsReset:
                  - byTime:
                      cron: "59 23 * * *"
                log: {}
        """,
    )
    trigger = only(done)
    assert trigger.rate_limit is not None and trigger.rate_limit.describe() == "20 per 0:01:00"
    assert any("spaces fires evenly" in t for t in texts(done, "differs"))
    dropped = "\n".join(texts(done, "dropped"))
    for key in ("spec.eventBusName", "atLeastOnce", "retryStrategy", "conditionsReset"):
        assert key in dropped


def test_a_misspelt_field_is_dropped_with_a_hint_as_kubernetes_drops_it() -> None:
    done = with_dependencies("""
        - name: d
          eventSourceName: w
          eventName: e
          filter:
            data: []
    """)
    assert any(
        "filter: not a field" in t and "did you mean 'filters'" in t for t in texts(done, "dropped")
    )


def test_trigger_parameters_that_rewrite_the_template_are_refused() -> None:
    done = with_dependencies(
        """
        - name: d
          eventSourceName: w
          eventName: e
        """,
        """
          triggers:
            - template:
                name: t
                log: {}
              parameters:
                - src:
                    dependencyName: d
                    dataKey: body.x
                  dest: log.intervalSeconds
        """,
    )
    assert "rewrite the trigger's own template" in refusal(done)


# --- the file, and manifests Argo would refuse ------------------------------------------


def test_the_file_lists_what_is_not_translated_on_top_and_loads_as_written() -> None:
    done = translated(
        WORKFLOW_SENSOR
        + """
    - template:
        name: slack-trigger
        slack:
          channel: general
"""
    )
    assert done.source is not None
    head = done.source.split('"""', 1)[0]
    assert "# Refused (not translated, so not in this file):" in head
    assert "# - trigger 'slack-trigger': slack triggers have no tripwire target" in head
    assert "# Dropped (no tripwire equivalent; nothing else changes):" in head
    assert [f.name for f in done.flows] == ["webhook_workflow_trigger"]


def test_a_value_with_a_newline_cannot_break_out_of_its_comment() -> None:
    done = translated(
        WORKFLOW_SENSOR.replace("generateName: webhook-", 'generateName: "a\\nimport os"')
    )
    assert done.source is not None
    assert "\nimport os" not in done.source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Sensor\nspec: [", "not valid YAML at line 2"),
        ("apiVersion: argoproj.io/v1alpha1\nkind: EventSource\n", "holds 0 Sensors"),
        ("apiVersion: v1\nkind: Sensor\nmetadata: {name: s}\n", "apiVersion is 'v1'"),
        ("apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nspec: {}\n", "metadata.name is missing"),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {name: s}\nspec:\n"
            "  dependencies: []\n",
            "spec.dependencies must list",
        ),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {name: s}\nspec:\n"
            "  dependencies: [{name: d, eventSourceName: w}]\n",
            "needs name, eventSourceName and eventName",
        ),
    ],
)
def test_a_manifest_that_is_not_a_sensor_fails_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(DeclarationError, match=message.replace("(", r"\(")):
        translate(read_manifest(text, "sensor.yaml"), origin="sensor.yaml", options=Options())


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("data:\n  - path: body.x\n    type: number\n    value: [100]", "quote them"),
        ("data:\n  - path: body.x\n    type: string\n    value: []", "needs path, type and value"),
        ("dataLogicalOperator: OR\ndata: []", "accepts 'and', 'or'"),
        ('time:\n  start: "9am"\n  stop: "17:00:00"', "is not HH:MM:SS"),
        ('time:\n  start: "09:00:00"\n  stop: "09:00:00"', "start equals stop"),
    ],
)
def test_filters_argo_would_refuse_fail_the_import_naming_the_fix(
    filters: str, message: str
) -> None:
    with pytest.raises(DeclarationError, match=message):
        with_filters(filters)


def test_unquoted_clock_times_and_dates_are_text_as_kubernetes_reads_them() -> None:
    # PyYAML's YAML 1.1 would read 10:00:00 as 36,000 (base 60) and 2026-01-01 as a date
    done = with_filters("""
            time:
              start: 10:00:00
              stop: 11:30:00
            context:
              subject: 2026-01-01
    """)
    assert "never '2026-01-01'" in refusal(done)
    dep = dependency(with_filters("time:\n  start: 10:00:00\n  stop: 11:30:00"))
    assert dep.filters == (TimeOfDay(start=time(10), stop=time(11, 30)),)


def test_every_flow_spec_of_the_file_is_what_tripwire_deploys() -> None:
    done = translated(WORKFLOW_SENSOR)
    [flow] = done.flows
    assert isinstance(flow, FlowSpec) and flow.entrypoint.function == flow.name


def test_manifest_values_stay_data_in_the_file_they_cannot_become_code() -> None:
    # Given values that would end a string, a docstring or a comment, and run code
    escape = '"""\nraise SystemExit("injected")\n#\x00'
    manifest = yaml.safe_load(WORKFLOW_SENSOR)
    manifest["metadata"]["name"] = f"s{escape}"
    [trigger] = manifest["spec"]["triggers"]
    trigger["template"]["name"] = f"x{escape}"
    workflow = trigger["template"]["argoWorkflow"]["source"]["resource"]
    workflow["metadata"]["labels"]["team"] = f"d{escape}"
    workflow["spec"]["arguments"]["parameters"][1]["value"] = f"h{escape}"
    done = translate(manifest, origin=f"o{escape}", options=Options())
    # Then the file loads (a SystemExit would end this test) with the values as data
    [flow] = done.flows
    assert flow.name == "x_raise_SystemExit_injected"
    assert flow.target_options["labels"]["team"] == f"d{escape}"
    assert flow.target_options["parameters"]["greeting"] == f"h{escape}{{greeting}}"
