"""`tripwire deploy` of a sources file, and `tripwire sources list|status`, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.store import RunStore
from sensors.sources.store import list_source_status
from tests.fixtures.buses import bus
from tests.fixtures.engine import tripwire_cli
from tests.fixtures.sources import SOURCE_FLOWS, ran, state
from tests.fixtures.waits import eventually
from triggers.settings import Settings

pytestmark = pytest.mark.integration


async def test_deploy_a_sources_file_then_see_it_run_from_the_command_line(
    engine_env: dict[str, str], tmp_path: Path, unique_name: str
) -> None:
    redis = bus("redis", unique_name)
    redis.require()
    name = f"src-{unique_name}"
    file = tmp_path / "sources.yaml"
    file.write_text(
        "sources:\n"
        f"  - name: {name}\n"
        f"    url: {redis.url}\n"
        f"    stream: orders-{unique_name}\n"
        "    field: body\n"
        "    format: json\n"
        "    event: order_placed\n"
        "    filters: ['$.amount >= 10']\n"
    )
    # Given a sources file deployed with the flows, as any deploy
    deployed = await tripwire_cli(engine_env, "deploy", str(file), str(SOURCE_FLOWS))
    assert deployed.returncode == 0, deployed.stderr
    assert f"created    source {name}" in deployed.stdout
    listed = await tripwire_cli(engine_env, "sources", "list")
    assert name in listed.stdout and f"orders-{unique_name}" in listed.stdout, listed.stdout
    # When a worker runs and messages arrive: one good, one filtered out, one not JSON
    async with Engine(Settings(), discover_flows([SOURCE_FLOWS])) as engine:
        assert engine.store is not None
        await engine.wait_ready()
        await eventually(lambda: state(engine, name) == "connected", "the source connected")
        await redis.send({"order": "o-1", "amount": 50})
        await redis.send({"order": "o-2", "amount": 1})
        await redis.send(b"not json")
        await ran(engine.store, "o-1")
        await eventually(lambda: _reported(engine.store, name), "the status report")
        # Then `tripwire sources status` shows the connection, the counts and the last error
        status = await tripwire_cli(engine_env, "sources", "status", "--json")
        (row,) = json.loads(status.stdout)
        assert row["state"] == "connected"
        assert (row["messages_in"], row["events_out"], row["filtered"], row["dead_lettered"]) == (
            3,
            1,
            1,
            1,
        )
        assert "the body is not JSON" in row["last_error"]
        table = await tripwire_cli(engine_env, "sources", "status")
        assert "connected" in table.stdout and "not JSON" in table.stdout, table.stdout
        # And the message that made no event waits among the dead letters, with the reason
        letters = await tripwire_cli(engine_env, "events", "dead-letter", "list", "--json")
        (letter,) = json.loads(letters.stdout)
        assert letter["topic"] == f"source:{name}"
        assert "not JSON" in letter["reason"]
    # After the worker stopped, the source says so
    stopped = await tripwire_cli(engine_env, "sources", "status", name, "--json")
    assert [r["state"] for r in json.loads(stopped.stdout)] == ["stopped"]
    unknown = await tripwire_cli(engine_env, "sources", "status", "nope")
    assert unknown.returncode == 1 and "no deployed source 'nope'" in unknown.stderr


async def _reported(store: RunStore, name: str) -> bool:
    settings = Settings()
    found = await list_source_status(store, project=settings.project, domain=settings.domain)
    return any(r.source == name and r.messages_in == 3 for r in found)


async def test_a_wrong_sources_file_is_refused_naming_the_field(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    file = tmp_path / "sources.yaml"
    file.write_text(
        "sources:\n  - name: orders\n    url: redis://127.0.0.1\n    event: order_placed\n"
    )
    refused = await tripwire_cli(engine_env, "deploy", str(file))
    assert refused.returncode == 1
    assert "source 'orders'" in refused.stderr and "needs 'stream'" in refused.stderr
