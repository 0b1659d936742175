"""`tripwire dev` and the CLI, as a user runs them: separate processes, one TRIPWIRE_HOME."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.servers import pid_alive

pytestmark = pytest.mark.integration

FLOWS = Path(__file__).parent / "flows"


def _wait(predicate: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


class Dev:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRIPWIRE_")} | {
            "TRIPWIRE_HOME": str(home)
        }
        self.process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "sensors", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            pytest.fail(f"tripwire {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    def run_for(self, event_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            for run in json.loads(self.cli("runs", "list", "--json").stdout):
                if any(e["id"] == event_id for e in run["events"]) and run["finished_at"]:
                    return run
            return None

        return _wait(finished, f"the run of event {event_id}", 60)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    home = tmp_path_factory.mktemp("dev-home")
    running = Dev(home)
    log = (home / "dev.log").open("wb")
    running.process = subprocess.Popen(
        [sys.executable, "-m", "sensors", "dev", str(FLOWS)],
        env=running.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(
            lambda: (home / "dev.json").exists() or running.process.poll() is not None,
            "dev.json",
            60,
        )
        if running.process.poll() is not None:
            pytest.fail(f"tripwire dev exited:\n{(home / 'dev.log').read_text()}")
        yield running
    finally:
        if running.process.poll() is None:
            running.process.send_signal(signal.SIGINT)
            running.process.wait(20)
        log.close()


def test_dev_writes_where_it_listens_once_it_accepts_events(dev: Dev) -> None:
    # dev.json is written once both stages own their partitions (Engine.wait_ready); how
    # soon that is (the promise: 10 s) is measured by bench/startup.py, not here
    info = json.loads((dev.home / "dev.json").read_text())
    assert info["kafka_bootstrap"].startswith("127.0.0.1:")
    assert info["database_url"].startswith("sqlite+aiosqlite:///")


def test_cli_publish_prints_the_event_id_and_the_run_shows_mapped_parameters(dev: Dev) -> None:
    event_id = str(uuid.uuid4())
    done = dev.cli(
        "publish",
        "data_updated",
        "--payload",
        '{"table": "orders"}',
        "-p",
        "rows=12",
        "-p",
        "day=2026-11-23",
        "-p",
        "note=not json",
        "--id",
        event_id,
    )
    assert done.stdout.strip() == event_id
    run = dev.run_for(event_id)
    assert run["phase"] == "SUCCEEDED"
    assert run["parameters"] == {"table": "orders", "rows": 12, "day": "2026-11-23", "out": ""}
    assert run["events"][0]["payload"]["note"] == "not json"
    detail = json.loads(dev.cli("runs", "get", run["name"], "--json").stdout)
    assert detail["name"] == run["name"] and detail["started_at"] and detail["error"] is None
    text = dev.cli("runs", "get", run["name"]).stdout
    assert "SUCCEEDED" in text and "rows = 12" in text and event_id in text
    assert "attempts" in text and "#1  SUCCEEDED" in text and "inputs     file://" in text
    again = json.loads(dev.cli("publish", "data_updated", "-p", "rows=1", "--json").stdout)
    assert again["name"] == "data_updated" and dev.run_for(again["id"])["phase"] == "SUCCEEDED"


def test_a_failing_flow_shows_its_error_in_runs_get(dev: Dev) -> None:
    event_id = dev.cli("publish", "explode", "-p", "reason=no disk").stdout.strip()
    run = dev.run_for(event_id)
    assert run["phase"] == "FAILED"
    assert run["error"]["kind"] == "USER"
    text = dev.cli("runs", "get", run["name"]).stdout
    assert "RuntimeError: flow failed on purpose: no disk" in text
    assert "Traceback" in text


def test_sensors_status_shows_why_an_event_started_no_run(dev: Dev) -> None:
    event_id = dev.cli("publish", "data_updated", "-p", "rows=lots").stdout.strip()

    def failure() -> dict[str, Any] | None:
        statuses = json.loads(dev.cli("sensors", "status", "--json").stdout)
        for status in statuses:
            for f in status["failures"]:
                if f["event_id"] == event_id:
                    return f
        return None

    found = _wait(failure, "the trigger failure", 30)
    assert "rows" in found["reason"] and '"lots"' in found["reason"]
    assert event_id in dev.cli("sensors", "status", "refresh.trigger").stdout


def test_sensors_list_names_each_sensor_and_its_events(dev: Dev) -> None:
    sensors = json.loads(dev.cli("sensors", "list", "--json").stdout)
    waits = {s["sensor_id"]: [d["name"] for d in s["dependencies"]] for s in sensors}
    assert waits["refresh.trigger"] == ["data_updated"]
    assert waits["retrain.trigger"] == ["features_ready"]


def test_bad_cli_input_is_refused_with_the_reason(dev: Dev) -> None:
    bad_json = dev.cli("publish", "data_updated", "--payload", "{nope", check=False)
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr
    not_object = dev.cli("publish", "data_updated", "--payload", "[1]", check=False)
    assert not_object.returncode == 2 and "JSON object" in not_object.stderr
    bad_pair = dev.cli("publish", "data_updated", "-p", "rows", check=False)
    assert bad_pair.returncode == 2 and "key=value" in bad_pair.stderr
    bad_name = dev.cli("publish", "no spaces allowed", check=False)
    assert bad_name.returncode == 1 and "invalid event name" in bad_name.stderr
    unknown = dev.cli("runs", "get", "no-such-run", check=False)
    assert unknown.returncode == 1 and "no run named 'no-such-run'" in unknown.stderr


def test_a_second_dev_in_the_same_home_is_refused(dev: Dev) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "sensors", "dev", str(FLOWS)],
        env=dev.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert "another `tripwire dev`" in second.stderr


def test_sensors_status_explains_what_a_sensor_holds_and_filtered_out(dev: Dev) -> None:
    held_id = dev.cli("publish", "orders_loaded", "-p", "date=2026-11-23", "-p", "rows=3").stdout
    small_id = dev.cli("publish", "payment", "-p", "amount=5").stdout.strip()

    def status(sensor: str) -> dict[str, Any]:
        [found] = json.loads(dev.cli("sensors", "status", sensor, "--json").stdout)
        return {d["dep"]: d for d in found["dependencies"]}

    deps = _wait(
        lambda: (d := status("daily_join.trigger"))["orders_loaded"]["held"] and d,
        "the held orders event",
        30,
    )
    [hold] = deps["orders_loaded"]["held"]
    assert hold["event_id"] == held_id.strip() and hold["key"] == '"2026-11-23"'
    assert deps["orders_loaded"]["state"] == "satisfied"
    assert deps["customers_loaded"]["state"] == "awaited"
    expires_at, held_at = hold["expires_at"], hold["event_time"]
    expires = datetime.fromisoformat(expires_at) - datetime.fromisoformat(held_at)
    assert expires == timedelta(hours=1)

    payment = _wait(
        lambda: status("big_payment.trigger")["payment"]["filtered"], "the filter count", 30
    )
    assert payment["count"] == 1 and payment["last_event_id"] == small_id
    assert payment["last_reason"] == "$.amount = 5 is not >= 100"
    text = dev.cli("sensors", "status", "big_payment.trigger").stdout
    assert "filtered out 1" in text and "is not >= 100" in text and "awaited" in text
    listing = dev.cli("sensors", "list").stdout
    assert "payment && (approved || waived)" in listing


def test_dev_serves_the_api_with_a_local_token_it_prints(dev: Dev) -> None:
    info = json.loads((dev.home / "dev.json").read_text())
    token, url = info["api_token"], info["api_url"]
    assert (dev.home / "dev.json").stat().st_mode & 0o077 == 0  # the token is for this user
    log = (dev.home / "dev.log").read_text()
    assert f"token   {token}" in log and f"api     {url}" in log
    assert httpx.get(f"{url}/readyz", timeout=10).json()["status"] == "ok"
    answer = httpx.post(
        f"{url}/api/v1/events/data_updated",
        json={"rows": "5"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    run = dev.run_for(answer.json()["id"])
    assert run["phase"] == "SUCCEEDED" and run["parameters"]["rows"] == 5


def test_ctrl_c_stops_dev_its_broker_and_removes_dev_json(dev: Dev) -> None:
    # Runs last in this module: it stops the shared dev engine.
    assert dev.process is not None
    broker_pid = json.loads((dev.home / "dev.json").read_text())["broker_pid"]
    dev.process.send_signal(signal.SIGINT)
    assert dev.process.wait(20) == 0
    assert not (dev.home / "dev.json").exists()
    _wait(lambda: not pid_alive(broker_pid), "the broker to exit", 10)


def test_a_busy_default_port_moves_the_api_and_says_so_and_a_busy_port_asked_for_is_refused(
    tmp_path: Path,
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        # Asked for with --port: refused, saying what to do
        asked = Dev(tmp_path / "asked")
        refused = asked.cli("dev", str(FLOWS), "--port", str(port), check=False)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1] == (
            f"error: the API cannot listen on 127.0.0.1:{port}: Address already in use; "
            "choose a free port with --port (0: any), or TRIPWIRE_API_PORT"
        )
        # As the default (TRIPWIRE_API_PORT, like 8080 taken by another dev): moved
        moved = Dev(tmp_path / "moved")
        moved.env["TRIPWIRE_API_PORT"] = str(port)
        log = (tmp_path / "moved.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "sensors", "dev", str(FLOWS)],
            env=moved.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            dev_json = moved.home / "dev.json"
            _wait(lambda: dev_json.exists() or process.poll() is not None, "dev.json", 60)
            url = json.loads(dev_json.read_text())["api_url"]
            assert not url.endswith(f":{port}")
            # dev.json is written just before the banner is printed: wait for the banner
            said = _wait(
                lambda: "Ctrl-C stops" in (text := (tmp_path / "moved.log").read_text()) and text,
                "the banner",
                30,
            )
            assert f"port {port} is busy (another tripwire dev?), so the API serves on " in said
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(20)
            log.close()
    finally:
        taken.close()
