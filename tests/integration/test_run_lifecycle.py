"""Retries, timeouts, abort and lifecycle events, through the real engine, broker and store."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs import history as runs_history
from sensors.runs.models import RunRecord
from sensors.runs.phases import TERMINAL_PHASES as TERMINAL
from sensors.runs.phases import AttemptPhase, ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from sensors.stages.kafka import new_consumer
from sensors.stages.lifecycle_relay import TASK_EVENT, WORKFLOW_EVENT
from tests.fixtures.engine import FLOWS, finished_run, tripwire_cli
from tests.fixtures.runs import new_run
from tests.fixtures.servers import pid_alive
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.settings import Settings

pytestmark = pytest.mark.integration

P, A = WorkflowPhase, AttemptPhase


async def flaky(tmp_path: Path, *, fail_times: int) -> str:
    """Request a run of the `flaky` flow that fails its first ``fail_times`` attempts."""
    return await publish.aio(
        "flaky_requested", {"marker": str(tmp_path / "n"), "fail_times": fail_times}
    )


async def test_a_flow_that_fails_once_is_retried_as_a_second_attempt(
    store: RunStore, tmp_path: Path
) -> None:
    event_id = await publish.aio(
        "flaky_requested", {"marker": str(tmp_path / "n"), "fail_times": 1}
    )
    run = await finished_run(store, event_id)
    assert run.phase == P.SUCCEEDED and run.retries == 2
    attempts = await runs_history.attempts(store, run.project, run.domain, run.name)
    assert [a.phase for a in attempts] == [A.RETRYABLE_FAILED, A.SUCCEEDED]
    assert attempts[0].error is not None
    assert (attempts[0].error.kind, attempts[0].error.code) == (ErrorKind.USER, "ValueError")


async def test_a_flow_that_keeps_failing_fails_after_its_retries(
    store: RunStore, tmp_path: Path
) -> None:
    event_id = await publish.aio(
        "flaky_requested", {"marker": str(tmp_path / "n"), "fail_times": 9}
    )
    run = await finished_run(store, event_id)
    assert run.phase == P.FAILED
    assert run.error is not None and run.error.code == "ValueError"
    assert run.error.worker and run.error.timestamp
    attempts = await runs_history.attempts(store, run.project, run.domain, run.name)
    assert [a.phase for a in attempts] == [A.RETRYABLE_FAILED, A.RETRYABLE_FAILED, A.FAILED]
    assert (tmp_path / "n").read_text() == "3"


async def test_a_run_over_its_timeout_is_timed_out_and_its_process_tree_killed(
    store: RunStore, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    event_id = await publish.aio("slow_requested", {"pid_file": str(pid_file)})
    run = await finished_run(store, event_id)
    assert run.phase == P.TIMED_OUT
    assert run.error is not None and run.error.code == "Timeout"
    await eventually(lambda: not pid_alive(int(pid_file.read_text())), "the child to be gone")


async def _running(store: RunStore, event_id: str) -> RunRecord:
    async def probe() -> RunRecord | None:
        for run in await store.list_runs(phase=P.RUNNING):
            if run.attempts and any(e["id"] == event_id for e in run.events):
                return run
        return None

    return await eventually(probe, f"a running run for event {event_id}")


async def test_abort_stops_a_running_run_through_aborting_and_records_the_cause(
    store: RunStore, engine_env: dict[str, str], tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    event_id = await publish.aio("long_requested", {"pid_file": str(pid_file)})
    run = await _running(store, event_id)
    await eventually(pid_file.exists, "the flow to start its child")

    aborted = await tripwire_cli(engine_env, "runs", "abort", run.name, "--cause", "wrong table")
    assert aborted.returncode == 0, aborted.stderr
    assert "ABORTING" in aborted.stdout

    done = await finished_run(store, event_id)
    assert done.phase == P.ABORTED and done.abort_cause == "wrong table"
    await eventually(lambda: not pid_alive(int(pid_file.read_text())), "the child to be gone")
    history = await runs_history.history(store, run.project, run.domain, run.name)
    moves = [(c.attempt, c.phase) for c in history]
    assert moves[-3:] == [(None, "ABORTING"), (1, "ABORTED"), (None, "ABORTED")]

    again = await tripwire_cli(engine_env, "runs", "abort", run.name)
    assert again.returncode == 0 and "already ABORTED" in again.stdout


async def test_every_phase_change_goes_out_as_a_lifecycle_cloudevent(
    engine: Engine, store: RunStore, tmp_path: Path
) -> None:
    event_id = await publish.aio(
        "flaky_requested", {"marker": str(tmp_path / "n"), "fail_times": 0}
    )
    run = await finished_run(store, event_id)
    settings = engine.settings

    async def published() -> list[dict[str, Any]]:
        consumer = new_consumer(settings, group_id=None)
        await consumer.start()
        try:
            tps = [
                TopicPartition(settings.topic_run_events, p)
                for p in range(settings.topic_partitions)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            events: list[dict[str, Any]] = []
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                    for r in records:
                        headers = {k: v.decode() for k, v in r.headers}
                        events.append({**headers, "data": json.loads(r.value or b"{}")})
            return [e for e in events if e["data"]["execution_id"]["name"] == run.name]
        finally:
            await consumer.stop()

    events = await eventually(
        lambda: _complete(published()), "the run's final lifecycle event", timeout=15
    )
    kinds = [
        (e["ce_type"], e["ce_subject"], e["data"]["attempt"], e["data"]["phase"]) for e in events
    ]
    assert kinds == [
        (WORKFLOW_EVENT, "WorkflowExecutionEvent", None, "QUEUED"),
        (WORKFLOW_EVENT, "WorkflowExecutionEvent", None, "RUNNING"),
        (TASK_EVENT, "TaskExecutionEvent", 1, "RUNNING"),
        (TASK_EVENT, "TaskExecutionEvent", 1, "SUCCEEDED"),
        (WORKFLOW_EVENT, "WorkflowExecutionEvent", None, "SUCCEEDED"),
    ]
    final = events[-1]["data"]
    assert final["execution_id"] == {"project": run.project, "domain": run.domain, "name": run.name}
    assert final["flow"] == "flaky" and final["output_uri"].startswith("file://")
    assert len({e["ce_id"] for e in events}) == len(events)


async def _complete(pending: Any) -> list[dict[str, Any]] | None:
    events = await pending
    if (
        events
        and events[-1]["data"]["phase"] == "SUCCEEDED"
        and events[-1]["data"]["attempt"] is None
    ):
        return events
    return None


async def test_runs_created_and_recovered_from_the_cli_run_with_the_same_inputs(
    store: RunStore, engine_env: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "n"
    created = await tripwire_cli(
        engine_env,
        "runs",
        "create",
        "flaky",
        "-p",
        f"marker={marker}",
        "-p",
        "fail_times=0",
        "--name",
        "by-hand",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["created"] is True

    async def finished(name: str) -> RunRecord | None:
        run = await store.get_run(name)
        return run if run.phase in (P.SUCCEEDED, P.FAILED) else None

    run = await eventually(lambda: finished("by-hand"), "the created run to finish")
    assert run.phase == P.SUCCEEDED and run.parameters["fail_times"] == 0

    again = await tripwire_cli(engine_env, "runs", "create", "flaky", "--name", "by-hand")
    assert again.returncode == 0 and "already exists" in again.stdout

    recovered = await tripwire_cli(engine_env, "runs", "recover", "by-hand")
    assert recovered.returncode == 0, recovered.stderr
    assert "by-hand-r1" in recovered.stdout
    rerun = await eventually(lambda: finished("by-hand-r1"), "the recovered run to finish")
    assert rerun.parameters == run.parameters and rerun.recovered_from == "by-hand"
    assert marker.read_text() == "2"  # the flow ran twice

    refused = await tripwire_cli(engine_env, "runs", "recover", "by-hand", "-p", "fail_times=3")
    assert refused.returncode == 1 and "create a new run instead" in refused.stderr


async def test_a_running_worker_serves_deployed_flows_within_five_seconds(
    engine: Engine, store: RunStore, engine_env: dict[str, str], tmp_path: Path
) -> None:
    flow = tmp_path / "extra_flow.py"
    flow.write_text(
        "from triggers import trigger\n\n"
        "@trigger(event='extra_happened')\n"
        "def extra(rows: int = 0) -> None: ...\n"
    )
    first = await tripwire_cli(engine_env, "deploy", str(flow))
    assert first.returncode == 0, first.stderr
    assert "created    extra (revision 1)" in first.stdout
    assert (
        "unchanged  extra (revision 1)"
        in (await tripwire_cli(engine_env, "deploy", str(flow))).stdout
    )

    def serving(event: str) -> bool:
        assert engine.sensor_stage is not None
        return bool(engine.sensor_stage.router.interested(event))

    await eventually(lambda: serving("extra_happened"), "the worker to serve extra", timeout=5)
    run = await finished_run(store, await publish.aio("extra_happened", {"rows": 3}))
    assert (run.flow, run.phase, run.parameters) == ("extra", P.SUCCEEDED, {"rows": 3})

    # When the trigger changes, the new revision replaces the old one
    flow.write_text(flow.read_text().replace("extra_happened", "extra_changed"))
    changed = await tripwire_cli(engine_env, "deploy", str(flow), "--json")
    assert json.loads(changed.stdout)["changed"] == ["extra"]
    await eventually(lambda: serving("extra_changed"), "the worker to serve revision 2", timeout=5)
    assert not serving("extra_happened")
    run = await finished_run(store, await publish.aio("extra_changed", {"rows": 4}))
    assert run.parameters == {"rows": 4}


async def test_deploy_and_projects_refuse_bad_names_from_the_cli(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    flow = tmp_path / "extra_flow.py"
    flow.write_text("from triggers import trigger\n\n@trigger(event='e')\ndef f() -> None: ...\n")
    bad = await tripwire_cli(engine_env, "deploy", str(flow), "--project", "Not_Valid")
    assert bad.returncode == 1 and "invalid project name 'Not_Valid'" in bad.stderr
    made = await tripwire_cli(
        engine_env, "projects", "create", "data-platform", "--description", "ETL"
    )
    assert made.returncode == 0 and "created" in made.stdout
    listed = json.loads((await tripwire_cli(engine_env, "projects", "list", "--json")).stdout)
    assert [(p["name"], p["description"]) for p in listed] == [("data-platform", "ETL")]


async def test_a_chain_of_flows_runs_each_when_the_one_before_succeeds(
    store: RunStore, engine_env: dict[str, str]
) -> None:
    await publish.aio("chain_started", {})

    async def chain_done() -> list[RunRecord] | None:
        runs = {r.flow: r for r in await store.list_runs(limit=1000)}
        c = runs.get("chain_c")
        return [runs["chain_a"], runs["chain_b"], c] if c and c.phase in TERMINAL else None

    a, b, c = await eventually(chain_done, "chain_c to finish", timeout=60)
    assert [r.phase for r in (a, b, c)] == [P.SUCCEEDED] * 3
    notes = [
        json.loads(line)
        for line in (Path(engine_env["TRIPWIRE_HOME"]) / "chain.jsonl").read_text().splitlines()
    ]
    assert notes == [
        {
            "flow": "chain_a",
            "run": a.name,
            "upstream": None,
            "upstream_flow": None,
            "upstream_phase": None,
        },
        {
            "flow": "chain_b",
            "run": b.name,
            "upstream": a.name,
            "upstream_flow": "chain_a",
            "upstream_phase": "SUCCEEDED",
        },
        {
            "flow": "chain_c",
            "run": c.name,
            "upstream": b.name,
            "upstream_flow": "chain_b",
            "upstream_phase": "SUCCEEDED",
        },
    ]
    assert b.sensor_id == "chain_b.trigger" and b.events[0]["dependency"] == "chain_a"


async def test_the_engine_runs_on_postgresql(
    engine_env: dict[str, str], pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a worker whose run store is PostgreSQL (TRIPWIRE_DATABASE_URL)
    monkeypatch.setenv("TRIPWIRE_DATABASE_URL", pg_url)
    async with Engine(Settings(), discover_flows([FLOWS])) as running:
        await running.wait_ready(timeout=30)
        assert running.store is not None and running.store.url.startswith("postgresql")
        # When a flow fails once, and another runs after it by trigger_on_finish
        event_id = await flaky(tmp_path, fail_times=1)
        run = await finished_run(running.store, event_id)
        # Then retries, attempts, history and the CLI all work on it
        assert run.phase == P.SUCCEEDED and run.attempts == 2
        history = await runs_history.history(running.store, run.project, run.domain, run.name)
        assert [c.phase for c in history if c.attempt is None][-1] == "SUCCEEDED"
        shown = await tripwire_cli(
            engine_env | {"TRIPWIRE_DATABASE_URL": pg_url}, "runs", "get", run.name, "--json"
        )
        assert shown.returncode == 0, shown.stderr
        assert [a["phase"] for a in json.loads(shown.stdout)["attempts"]] == [
            "RETRYABLE_FAILED",
            "SUCCEEDED",
        ]


async def test_a_worker_starting_ends_the_runs_of_a_dead_worker_on_its_host(
    engine_env: dict[str, str],
) -> None:
    # Given a run left RUNNING by a worker process on this host that is gone
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_worker = f"{socket.gethostname()}:{gone.stdout.strip()}"
    settings = Settings()
    async with await RunStore.open(settings.store_url) as store:
        run, _ = await store.create_run(new_run(project=settings.project, flow="flaky"))
        await store.transition(run.project, "d", run.name, P.RUNNING)
        await runs_history.start_attempt(
            store, run.project, "d", run.name, pid=1, worker=dead_worker
        )
    # When a worker starts on the same store
    async with Engine(settings, discover_flows([FLOWS])) as running:
        assert running.store is not None
        ended = await running.store.get_run(run.name, project=run.project, domain="d")
        # Then the orphan is FAILED as a SYSTEM error, and can be recovered
        assert ended.phase == P.FAILED and ended.error is not None
        assert (ended.error.kind, ended.error.code) == (ErrorKind.SYSTEM, "WorkerLost")
        [attempt] = await runs_history.attempts(running.store, run.project, "d", run.name)
        assert attempt.phase == A.FAILED


async def test_runs_create_with_the_broker_down_names_the_address(
    engine_env: dict[str, str],
) -> None:
    down = engine_env | {"TRIPWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "TRIPWIRE_PUBLISH_TIMEOUT": "2"}
    done = await tripwire_cli(down, "runs", "create", "flaky", "-p", "fail_times=0")
    assert done.returncode == 1
    assert "cannot reach the Kafka broker at 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
