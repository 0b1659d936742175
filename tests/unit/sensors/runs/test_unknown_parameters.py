"""A run asked for by name refuses parameters its flow does not have, and lists the flow's
own (issue 30 item 3): a misspelt one would otherwise run with its default."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sensors.runs.deploy import deploy
from sensors.runs.objects import ObjectStore
from sensors.runs.service import RunService
from sensors.runs.store import RunStore
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.errors import TriggerError
from triggers.settings import Settings


@trigger(event="tables_loaded")
def etl(day: str, rows: int = 0, table: str = "orders") -> None: ...


@trigger(event="tick")
def bare() -> None: ...


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RunStore]:
    async with await RunStore.open(settings.store_url) as opened:
        await deploy(opened, [flow_spec(etl), flow_spec(bare)], project="p", domain="d")
        yield opened


@pytest.fixture
def service(settings: Settings, store: RunStore) -> RunService:
    # No producer: a refused run never gets as far as being enqueued.
    return RunService(settings, store, ObjectStore(settings.objects_root))


async def test_an_unknown_parameter_is_refused_with_a_hint_and_the_flows_parameters(
    service: RunService,
) -> None:
    with pytest.raises(TriggerError) as refused:
        await service.create("etl", {"day": "d", "row": 5}, project="p", domain="d")
    assert str(refused.value) == (
        "flow 'etl' has no parameter 'row' (did you mean 'rows'?); its parameters are: "
        "day, rows, table"
    )


async def test_several_unknown_parameters_are_named_together(service: RunService) -> None:
    with pytest.raises(TriggerError, match=r"has no parameters 'nosuchparam', 'x'; its"):
        await service.create("etl", {"nosuchparam": 1, "x": 2}, project="p", domain="d")


async def test_a_flow_without_parameters_says_it_takes_none(service: RunService) -> None:
    with pytest.raises(TriggerError, match=r"^flow 'bare' has no parameter 'x'; it takes none$"):
        await service.create("bare", {"x": 1}, project="p", domain="d")


async def test_a_refused_run_is_not_stored(service: RunService, store: RunStore) -> None:
    with pytest.raises(TriggerError):
        await service.create("etl", {"day": "d", "nope": 1}, name="etl-x", project="p", domain="d")
    assert await store.list_runs(project="p", domain="d") == []
