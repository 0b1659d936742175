"""The docs and examples stay true: generated pages are current, examples load and run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sensors.registry import discover_flows, discover_sources
from triggers.settings import reference_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == reference_markdown(), "run `python docs/generate.py` and commit the result"


def test_the_examples_declare_the_flows_the_readme_shows() -> None:
    flows = {f.name: f for f in discover_flows([ROOT / "examples"])}
    assert set(flows) == {
        "refresh_report",
        "model_refresh",
        "daily_join",
        "big_payment",
        "publish_dashboard",
        "alert_on_call",
        "nightly_rebuild",
        "hourly_check",
        "publish_model",
        "escalate_customer",
        "daily_load_missing",
        "load_overdue",
        "publish_validated",
        "refresh_orders_view",
        "command_report",
        "ci_rebuild",
        "train_model",
        "nightly_etl",
        # examples/orchestrators/: one flow per orchestrator
        "load_day_on_prefect",
        "load_day_on_airflow",
        "load_day_on_dagster",
        "load_orders_on_flyte",
        # examples/sources/: one flow per bus
        "pack_order",
        "cool_down",
        "book_invoice",
        "welcome_user",
        "reconcile_payment",
        "notify_customer",
    }
    [trig] = flows["refresh_report"].triggers
    assert [d.name for d in trig.dependencies] == ["data_updated"]


def test_the_metaflow_examples_are_metaflow_flows_apart_from_the_others() -> None:
    # Apart (a folder of their own, skipped in examples/): `make demo` runs examples/
    # without metaflow installed, and a flow file that cannot import stops `tripwire dev`
    flows = {f.name: f for f in discover_flows([ROOT / "examples" / "_metaflow"])}
    assert set(flows) == {"RefreshFlow", "ReportFlow"}
    assert all(f.entrypoint.metaflow is not None for f in flows.values())


def test_the_source_examples_declare_one_source_per_bus() -> None:
    sources = discover_sources([ROOT / "examples" / "sources"])
    assert sorted(s.kind for s in sources) == [
        "kafka",
        "mqtt",
        "nats",
        "postgres",
        "rabbitmq",
        "redis",
    ]


def test_the_faust_page_shows_the_faust_example_as_it_runs_in_its_test() -> None:
    # examples/_faust/ needs the faust extra, so tests/integration/test_faust_app.py runs it
    example = (ROOT / "examples" / "_faust" / "sales_loader.py").read_text()
    code = example.split('\n"""\n', 1)[1].strip()  # after the module docstring
    assert f"```python\n{code}\n```" in (ROOT / "docs" / "faust.md").read_text()


@pytest.mark.parametrize(
    "example",
    [
        "fresh_data.py",
        "model_refresh.py",
        "daily_join.py",
        "on_finish.py",
        "nightly.py",
        "approval.py",
        "watchdogs.py",
        "targets.py",
    ],
)
def test_each_example_runs_as_a_plain_script(example: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / example)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_the_argo_example_imports_as_docs_argo_events_shows(tmp_path: Path) -> None:
    # The command of docs/argo-events.md, on examples/argo/sensor.yaml
    out = tmp_path / "flows.py"
    sensor = ROOT / "examples" / "argo" / "sensor.yaml"
    command = ["import", "argo-sensor", str(sensor), "--partial", "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "sensors", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "refused: trigger 'notify-sales'" in done.stderr
    [flow] = discover_flows([out])
    assert (flow.name, flow.target) == ("ship_order", "argo://shop/ship-order")
