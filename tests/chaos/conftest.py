"""Fault-injection scenarios: publish a known set of events, inject a fault, then check
that every expected run exists exactly once and that no event was lost."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

from sensors.broker import EmbeddedBroker, free_port
from sensors.runs.models import RunRecord
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from tests.integration.conftest import engine_env, eventually  # noqa: F401 (a fixture)
from triggers import publish

FLOWS = Path(__file__).parent / "flows"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.chaos)


@dataclass
class Expected:
    """The runs a scenario's events must make: one per set of event ids."""

    runs: list[frozenset[str]] = field(default_factory=list)

    async def tick(self, n: int) -> None:
        self.runs.append(frozenset([await publish.aio("chaos_tick", {"n": n})]))

    async def pair(self, key: str) -> None:
        first = await publish.aio("chaos_a", {"k": key})
        second = await publish.aio("chaos_b", {"k": key})
        self.runs.append(frozenset([first, second]))

    async def stream(self, ticks: int, pairs: int, pause: float = 0.05) -> None:
        """``ticks`` single-event runs and ``pairs`` two-event ones, interleaved, each event
        with a fresh id."""
        every, made = max(1, ticks // max(pairs, 1)), 0
        for n in range(ticks):
            await self.tick(n)
            if n % every == 0 and made < pairs:
                await self.pair(f"k{n}-{uuid.uuid4().hex[:6]}")
                made += 1
            await asyncio.sleep(pause)

    async def exactly_once(self, store: RunStore, timeout: float = 180) -> list[RunRecord]:
        """Wait until each expected run finished, then check that it SUCCEEDED, that there
        is no other run, and that no event started two runs."""

        async def finished() -> list[RunRecord] | None:
            runs = await store.list_runs(limit=10_000)
            done = {frozenset(e["id"] for e in r.events) for r in runs if r.finished_at}
            return runs if all(run in done for run in self.runs) else None

        try:
            await eventually(finished, f"{len(self.runs)} finished runs", timeout=timeout)
        except BaseException:
            await _show(store, self.runs)
            raise
        await asyncio.sleep(3)  # a duplicate would show up by now
        runs = await store.list_runs(limit=10_000)
        made = Counter(frozenset(e["id"] for e in r.events) for r in runs)
        assert made == Counter(self.runs), _difference(made, Counter(self.runs))
        failed = [(r.name, r.phase, r.error) for r in runs if r.phase != WorkflowPhase.SUCCEEDED]
        assert not failed, failed
        return runs


def _difference(made: Counter[frozenset[str]], expected: Counter[frozenset[str]]) -> str:
    missing = sorted(map(sorted, (expected - made).elements()))
    extra = sorted(map(sorted, (made - expected).elements()))
    return f"missing runs for events {missing}; unexpected runs for {extra}"


async def _show(store: RunStore, expected: list[frozenset[str]]) -> None:
    runs = await store.list_runs(limit=10_000)
    print(f"{len(runs)} runs for {len(expected)} expected:")
    for run in runs:
        print(" ", run.name, run.phase, run.attempts, run.claimed_by, run.error)


@pytest.fixture
def chaos_env(engine_env: dict[str, str], tmp_path: Path) -> dict[str, str]:  # noqa: F811
    """The environment of a scenario's workers: its topics, and a SQLite run store."""
    return {
        **os.environ,
        "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}",
    }


@pytest.fixture
def s3_broker(
    moto_endpoint: str,
    engine_env: dict[str, str],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EmbeddedBroker]:
    """A Tansu broker keeping its data in a bucket of moto's S3, so it survives a restart;
    the test's publishes go to it."""
    bucket = f"tansu-{uuid.uuid4().hex[:10]}"
    aws = {
        "AWS_ENDPOINT": moto_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=bucket)
    broker = EmbeddedBroker(
        port=free_port(), storage=f"s3://{bucket}/", log_path=tmp_path / "tansu.log", env=aws
    )
    broker.start(timeout=30)
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", broker.bootstrap)
    try:
        yield broker
    finally:
        broker.stop()
