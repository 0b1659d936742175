"""Fixtures of the fault-injection scenarios (tests/fixtures/chaos.py): the workers'
environment, and a broker that keeps its data in S3."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensors.broker import EmbeddedBroker
from tests.fixtures.chaos import s3_tansu
from tests.fixtures.engine import engine_env  # noqa: F401 (a fixture)

CHAOS_TIMEOUT = 300
"""Seconds a scenario may take: past the suite's 120 s, so that its own waits (up to
180 s for every run to finish) fail first, with what they waited for."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("chaos") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(CHAOS_TIMEOUT))


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
    with s3_tansu(moto_endpoint, tmp_path / "tansu.log") as broker:
        monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", broker.bootstrap)
        yield broker
