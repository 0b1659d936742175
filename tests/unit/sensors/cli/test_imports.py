"""`tripwire import argo-sensor`: what it writes, what it reports, and how it fails."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sensors.cli import app
from sensors.cli.imports import REFUSED
from sensors.registry import discover_flows
from tests.fixtures.argo import HTTP_SENSOR, JOB_SENSOR, WORKFLOW_SENSOR
from tests.fixtures.imports import loaded_by

SENSOR = """
apiVersion: argoproj.io/v1alpha1
kind: Sensor
metadata:
  name: webhook
  namespace: argo-events
spec:
  dependencies:
    - name: test-dep
      eventSourceName: webhook
      eventName: example
      filters:
        data:
          - path: body.message
            type: string
            value: ["hello", "hey"]
  triggers:
    - template:
        name: log-trigger
        log: {}
"""
SLACK = """
    - template:
        name: slack-trigger
        slack:
          channel: general
"""


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["import", "argo-sensor", *args], input=stdin)


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "sensor.yaml"
    path.write_text(SENSOR)
    return path


def test_it_writes_the_flow_file_and_says_what_it_wrote(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "flows.py"
    done = run(str(manifest), "-o", str(out))
    assert done.exit_code == 0, done.output
    assert f"wrote 1 flow(s) to {out}: log_trigger" in done.stderr
    [flow] = discover_flows([out])
    [dependency] = flow.triggers[0].dependencies
    assert (dependency.name, dependency.filters[0].value) == ("example", "(?:hello)|(?:hey)")


def test_without_output_it_prints_the_file_and_nothing_else_on_standard_output(
    manifest: Path,
) -> None:
    done = run(str(manifest))
    assert done.exit_code == 0
    assert done.stdout.startswith("# Flows of the Argo Events Sensor 'webhook'")
    assert "def log_trigger() -> None:" in done.stdout


def test_it_reads_the_manifest_from_standard_input() -> None:
    done = run("-", stdin=SENSOR)
    assert done.exit_code == 0 and "# Written from standard input" in done.stdout


def test_a_trigger_it_cannot_translate_writes_nothing_and_exits_3(
    manifest: Path, tmp_path: Path
) -> None:
    manifest.write_text(SENSOR + SLACK)
    out = tmp_path / "flows.py"
    done = run(str(manifest), "-o", str(out))
    assert done.exit_code == REFUSED == 3
    assert "refused: trigger 'slack-trigger': slack triggers have no tripwire target" in done.stderr
    assert "nothing was written" in done.stderr and "--partial" in done.stderr
    assert not out.exists()


def test_partial_writes_the_others_and_lists_the_refused_on_top(
    manifest: Path, tmp_path: Path
) -> None:
    manifest.write_text(SENSOR + SLACK)
    out = tmp_path / "flows.py"
    done = run(str(manifest), "-o", str(out), "--partial")
    assert done.exit_code == 0
    assert "# - trigger 'slack-trigger': slack triggers" in out.read_text()


def test_partial_with_nothing_translatable_still_exits_3(manifest: Path) -> None:
    manifest.write_text(SENSOR.replace("log: {}", "slack: {channel: general}"))
    done = run(str(manifest), "--partial")
    assert done.exit_code == REFUSED and "no trigger could be translated" in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Sensor\nspec: [\n", "is not valid YAML at line 3"),
        ("apiVersion: v1\nkind: ConfigMap\n", "holds 0 Sensors (kinds: ['ConfigMap'])"),
        (
            "apiVersion: argoproj.io/v1alpha1\nkind: Sensor\nmetadata: {name: s}\n"
            "spec: {dependencies: [{name: d}], triggers: []}\n",
            "spec.dependencies[0] needs name, eventSourceName and eventName",
        ),
    ],
)
def test_a_bad_manifest_fails_with_one_line_naming_the_problem(
    manifest: Path, text: str, message: str
) -> None:
    manifest.write_text(text)
    done = run(str(manifest))
    assert done.exit_code == 1
    assert message in done.stderr and "Traceback" not in done.output


HTTP_TRIGGER = "  triggers:\n    - template:"


def http_trigger_with(setting: str) -> str:
    """HTTP_SENSOR with a trigger-level setting (YAML at the template's level)."""
    return HTTP_SENSOR.replace(HTTP_TRIGGER, f"  triggers:\n    - {setting}\n      template:")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HTTP_SENSOR.replace("method: POST", "method: POST\n          timeout: 30s"),
            "http.timeout is '30s'; Argo takes a whole number of seconds (timeout: 30).",
        ),
        (
            http_trigger_with("policy: {status: {allow: ['2xx']}}"),
            "policy.status.allow is ['2xx']; Argo takes a list of HTTP statuses as numbers",
        ),
        (
            http_trigger_with("policy: {status: {allow: 200}}"),
            "policy.status.allow is 200; Argo takes a list of HTTP statuses as numbers",
        ),
        (
            http_trigger_with("retryStrategy: {steps: abc}"),
            "retryStrategy.steps is 'abc'; Argo takes a whole number of tries (steps: 3).",
        ),
        (
            HTTP_SENSOR.replace("headers:\n            X-Team: data", "headers: [a]"),
            "http.headers must be a mapping of keys to values, not ['a'].",
        ),
        (http_trigger_with("policy: k8s"), "policy must be a mapping of keys to values"),
        (
            WORKFLOW_SENSOR.replace("- name: greeting\n", "- "),
            "arguments.parameters[1] needs a name; Argo refuses an argument without one.",
        ),
        (
            JOB_SENSOR.replace("- name: MODE\n", "- "),
            "containers[0].env[0] needs a name; Kubernetes refuses it.",
        ),
        (
            JOB_SENSOR.replace('cpu: "2"', 'cpu: "2"\n' + " " * 28 + 'nvidia.com/gpu: "1x"'),
            "limits.nvidia.com/gpu is '1x'; Kubernetes takes a whole number of GPUs",
        ),
        (
            JOB_SENSOR.replace("activeDeadlineSeconds: 600", "activeDeadlineSeconds: 1h"),
            "activeDeadlineSeconds is '1h'; Kubernetes takes a whole number of seconds",
        ),
        (
            HTTP_SENSOR.replace("X-Team: data", "X-Team: &h {again: *h}"),
            "headers.X-Team.again holds itself (a YAML alias inside its own anchor)",
        ),
        (
            HTTP_SENSOR.replace("X-Team: data", 'X-Team: "\\ud800"'),
            "headers.X-Team holds text that is not Unicode ('\\ud800': a lone surrogate)",
        ),
        (
            HTTP_SENSOR.replace("X-Team: data", "X-Team: !!binary aGk="),
            "headers.X-Team holds a bytes (a YAML tag such as !!binary or !!set)",
        ),
        (
            WORKFLOW_SENSOR.replace("namespace: argo-events", "namespace: [a]"),
            "metadata.namespace is ['a'], not a namespace",
        ),
    ],
)
def test_a_manifest_argo_would_refuse_fails_with_one_line_naming_the_field_and_the_fix(
    manifest: Path, text: str, message: str
) -> None:
    manifest.write_text(text)
    done = run(str(manifest))
    assert done.exit_code == 1, done.output
    assert message in " ".join(done.stderr.split()) and "Traceback" not in done.output


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        # Kubernetes reads a manifest's dates as text: no date object reaches the file
        (WORKFLOW_SENSOR.replace("value: hi", "value: 2024-01-01"), '"greeting": "2024-01-01{'),
        (HTTP_SENSOR.replace("X-Team: data", "X-Date: 2024-01-01"), '"X-Date": "2024-01-01"'),
    ],
)
def test_dates_in_a_manifest_stay_text_as_kubernetes_reads_them(
    manifest: Path, text: str, setting: str
) -> None:
    manifest.write_text(text)
    done = run(str(manifest))
    assert done.exit_code == 0, done.output
    assert setting in done.stdout


def test_an_importer_bug_is_one_line_and_exit_1_with_the_traceback_under_verbose(
    manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom\nand more")

    monkeypatch.setattr("sensors.interop.argo_sensor.translate", broken)
    done = run(str(manifest))
    assert done.exit_code == 1
    assert done.stderr.strip() == (
        "error: an importer bug: RuntimeError: boom and more; please report it with the "
        "manifest (--verbose shows where)."
    )
    verbose = run(str(manifest), "--verbose")
    assert verbose.exit_code == 1 and "Traceback" in verbose.stderr


def test_a_missing_manifest_fails_without_a_traceback(tmp_path: Path) -> None:
    done = run(str(tmp_path / "nope.yaml"))
    assert done.exit_code == 1 and "cannot read" in done.stderr
    assert done.exception is None or isinstance(done.exception, SystemExit)


def test_it_does_not_overwrite_a_file_unless_forced(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "flows.py"
    out.write_text("# mine\n")
    refused = run(str(manifest), "-o", str(out))
    assert refused.exit_code == 1 and "pass --force" in refused.stderr
    assert out.read_text() == "# mine\n"
    assert run(str(manifest), "-o", str(out), "--force").exit_code == 0


def test_options_name_events_by_source_and_set_the_window(manifest: Path) -> None:
    manifest.write_text(
        SENSOR.replace(
            "  triggers:",
            textwrap.indent(
                "- name: other\n  eventSourceName: kafka\n  eventName: orders\n", "    "
            )
            + "  triggers:",
        )
    )
    done = run(str(manifest), "--prefix-source", "--within", "2h")
    assert done.exit_code == 0, done.output
    assert '"name": "webhook.example"' in done.stdout and '"name": "kafka.orders"' in done.stdout
    assert 'within="2h"' in done.stdout


def test_a_bad_within_is_an_error_not_a_traceback(manifest: Path) -> None:
    done = run(str(manifest), "--within", "soon")
    assert done.exit_code == 1 and "--within='soon' is not a duration" in done.stderr


def test_import_help_loads_neither_the_engine_nor_the_translator(tmp_path: Path) -> None:
    found = loaded_by(
        "sys.argv = ['tripwire', 'import', 'argo-sensor', '--help']\n"
        "from sensors.cli import main\nmain()",
        ["sqlalchemy", "aiokafka", "sensors.interop.argo_sensor", "yaml"],
        home=tmp_path,
    )
    assert found == {"code": 0, "loaded": []}
