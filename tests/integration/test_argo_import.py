"""An Argo Events Sensor brought over and deployed: the imported flow fires on the events the
Sensor would fire on, with the parameters it would pass, on a real engine (embedded broker,
SQLite store) whose Workflows go to a Kubernetes emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kmock
import pytest

from sensors.engine import Engine
from sensors.interop.argo_sensor import Options, read_manifest, translate
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.store import RunStore
from tests.fixtures.waits import caught_up, eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "argo" / "sensor.yaml"
WORKFLOWS = "argoproj.io/v1alpha1/workflows"


async def run_of(store: RunStore, event_id: str) -> RunRecord:
    """The run the event ``event_id`` took part in, once it exists."""

    async def probe() -> RunRecord | None:
        runs = await store.list_runs(flow="ship_order", limit=100)
        return next((r for r in runs if event_id in {e["id"] for e in r.events}), None)

    found: RunRecord = await eventually(probe, f"a run of event {event_id}", timeout=30)
    return found


async def test_an_imported_sensor_fires_as_argo_would_with_the_parameters_argo_would_pass(
    engine_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the example Sensor (regexes and a float bound on orders, dashed dependency
    # names in its condition) imported, its slack trigger left out, and deployed
    done = translate(
        read_manifest(EXAMPLE.read_text(), "sensor.yaml"), origin="sensor.yaml", options=Options()
    )
    assert [f.where for f in done.refused] == ["trigger 'notify-sales'"]
    assert done.source is not None
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "orders.py").write_text(done.source)
    async with kmock.KubernetesEmulator() as k8s, kmock.Server(k8s):
        k8s.resources[WORKFLOWS] = {"kind": "Workflow", "namespaced": True}
        monkeypatch.setenv("TRIPWIRE_KUBE_API_URL", str(k8s.url))
        monkeypatch.setenv("TRIPWIRE_KUBE_POLL_INTERVAL", "0.1")
        async with Engine(Settings(), discover_flows([flows])) as running:
            await running.wait_ready(timeout=30)
            assert running.store is not None and running.sensor_stage is not None
            store = running.store
            # When orders the filters refuse arrive (a region no value matches, an amount
            # under the bound), then one they accept, then a payment
            await publish.aio("order-placed", {"id": "o-ap", "region": "ap-south-1", "amount": 900})
            small = await publish.aio(
                "order-placed", {"id": "o-small", "region": "eu-west-1", "amount": 100.49}
            )
            await publish.aio("order-placed", {"id": "o-eu", "region": "eu-west-1", "amount": 250})
            first = await run_of(store, await publish.aio("payment-captured", {"reference": "p1"}))
            # And another accepted order, at the bound and written as text, with its payment
            await publish.aio(
                "order-placed", {"id": "o-us", "region": "us-east-1", "amount": "100.50"}
            )
            second = await run_of(store, await publish.aio("payment-captured", {"reference": "p2"}))
            await caught_up()
            runs = await store.list_runs(flow="ship_order", limit=100)
            rejected = running.sensor_stage.stats.filtered[("ship_order.trigger", "order_placed")]
            workflows = await eventually(
                lambda: _submitted(k8s) if len(_submitted(k8s)) == 2 else None,
                "the two runs' Workflows",
                timeout=30,
            )
    # Then exactly the two accepted orders ran, each with its own payment
    assert sorted(r.name for r in runs) == sorted([first.name, second.name])
    assert first.parameters == {"order": "o-eu", "region": "eu-west-1", "payment": "p1"}
    assert second.parameters == {"order": "o-us", "region": "us-east-1", "payment": "p2"}
    assert sorted(e["dependency"] for e in first.events) == ["order_placed", "payment_captured"]
    # And the refused orders were filtered out, the last one by the float comparison
    assert rejected.count == 2 and rejected.last_event_id == small
    assert rejected.last_reason == "$.amount = 100.49 is not >= 100.5"
    # And each run submitted the WorkflowTemplate with the arguments Argo would pass
    submitted = sorted((_arguments(w) for w in workflows), key=lambda a: a["order"])
    assert submitted == [
        {"order": "o-eu", "region": "eu-west-1", "payment": "p1", "carrier": "default"},
        {"order": "o-us", "region": "us-east-1", "payment": "p2", "carrier": "default"},
    ]
    assert all(w["spec"]["workflowTemplateRef"] == {"name": "ship-order"} for w in workflows)
    assert all(w["metadata"]["labels"]["events.argoproj.io/sensor"] == "orders" for w in workflows)


def _submitted(k8s: kmock.KubernetesEmulator) -> list[Any]:
    return [k8s.objects[key] for key in list(k8s.objects) if key[0] == WORKFLOWS]


def _arguments(workflow: Any) -> dict[str, str]:
    return {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
