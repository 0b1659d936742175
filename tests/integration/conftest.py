"""Fixtures for tests that run the whole engine against the real broker and store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sensors.api import ApiServer
from sensors.api.auth import hash_token, new_token
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.models import RunRecord
from sensors.runs.phases import TERMINAL_PHASES
from sensors.runs.store import RunStore
from triggers.settings import ApiToken, Settings

FLOWS = Path(__file__).parent / "flows"


@pytest.fixture
def engine_env(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """TRIPWIRE_* settings for one test: its own topics, project, home and SQLite store.

    They go into the environment because that is how publish(), the CLI and run
    processes are configured for real.
    """
    env = {
        "TRIPWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRIPWIRE_HOME": str(tmp_path / "home"),
        "TRIPWIRE_PROJECT": unique_name,
        "TRIPWIRE_TOPIC_EVENTS": f"{unique_name}.events",
        "TRIPWIRE_TOPIC_RUN_REQUESTS": f"{unique_name}.run-requests",
        "TRIPWIRE_TOPIC_RUN_EVENTS": f"{unique_name}.run-events",
        "TRIPWIRE_TOPIC_SENSOR_OFFERS": f"{unique_name}.sensor-offers",
        "TRIPWIRE_TOPIC_SENSOR_STATE": f"{unique_name}.sensor-state",
        "TRIPWIRE_TOPIC_DEAD_LETTER": f"{unique_name}.dead-letter",
        "TRIPWIRE_TOPIC_PARTITIONS": "2",
    }
    monkeypatch.delenv("TRIPWIRE_DATABASE_URL", raising=False)
    monkeypatch.delenv("TRIPWIRE_RUN_CONTEXT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
async def engine(engine_env: dict[str, str]) -> AsyncIterator[Engine]:
    """A started worker with the flows of tests/integration/flows deployed."""
    async with Engine(Settings(), discover_flows([FLOWS])) as running:
        await running.wait_ready(timeout=30)
        yield running


@pytest.fixture
def store(engine: Engine) -> RunStore:
    assert engine.store is not None
    return engine.store


async def eventually(
    probe: Callable[[], Any], what: str, *, timeout: float = 30.0, interval: float = 0.1
) -> Any:
    """Await ``probe()`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


async def finished_run(store: RunStore, event_id: str, *, timeout: float = 30.0) -> RunRecord:
    """The run that the event ``event_id`` triggered, once it reached a terminal phase."""

    async def probe() -> RunRecord | None:
        for run in await store.list_runs(limit=1000):
            if run.phase in TERMINAL_PHASES and any(e["id"] == event_id for e in run.events):
                return run
        return None

    return await eventually(probe, f"a finished run triggered by event {event_id}", timeout=timeout)


def tripwire_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``tripwire ARGS`` in a child process with ``env`` added to this one's."""
    return subprocess.run(
        [sys.executable, "-m", "sensors", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Api:
    """A running API: its URL, and a token of each scope."""

    url: str
    tokens: dict[str, str]
    settings: Settings

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}


def api_settings(**extra: Any) -> tuple[Settings, dict[str, str]]:
    """Settings (from the environment) with one token per scope, and the tokens."""
    tokens = {scope: new_token() for scope in ("admin", "read", "publish", "orders", "other")}
    entries = [
        ApiToken(name=scope, hash=hash_token(tokens[scope]), scope=scope)  # type: ignore[arg-type]
        for scope in ("admin", "read", "publish")
    ]
    entries.append(
        ApiToken(
            name="orders", hash=hash_token(tokens["orders"]), scope="publish", events=["orders."]
        )
    )
    entries.append(
        ApiToken(name="other", hash=hash_token(tokens["other"]), scope="read", projects=["other"])
    )
    settings = Settings(api_host="127.0.0.1", api_port=0, api_tokens=entries, **extra)
    return settings, tokens


@pytest.fixture
async def api(engine: Engine) -> AsyncIterator[Api]:
    """The HTTP API of the test's engine, on a free port."""
    settings, tokens = api_settings(
        webhook_sources={"github": {"secret": "s3cr3t-webhook", "events": ["github."]}}
    )
    server = ApiServer(settings)
    url = await server.start()
    try:
        yield Api(url, tokens, settings)
    finally:
        await server.stop()
