"""`tripwire import argo-sensor`: what it writes, what it reports, and how it fails."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from sensors.cli import app
from sensors.cli.imports import REFUSED
from sensors.registry import discover_flows
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
