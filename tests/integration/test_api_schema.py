"""schemathesis against the API's own OpenAPI document: no 5xx, no schema violations.

The API runs as `tripwire api` in its own process (schemathesis calls it
synchronously), on the test broker and a SQLite store, with an admin token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sensors.api.auth import new_token

pytestmark = pytest.mark.integration

TOKEN = new_token()


@pytest.fixture(scope="module")
def api_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("api-schema")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "TRIPWIRE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "TRIPWIRE_HOME": str(home),
        "TRIPWIRE_PROJECT": "schema",
        "TRIPWIRE_TOPIC_EVENTS": f"schema-{port}.events",
        "TRIPWIRE_TOPIC_RUN_REQUESTS": f"schema-{port}.run-requests",
        "TRIPWIRE_API_TOKEN": TOKEN,
        "TRIPWIRE_API_PORT": str(port),
        "TRIPWIRE_API_RATE_LIMIT": "100000",
        "TRIPWIRE_API_RATE_BURST": "100000",
        "TRIPWIRE_API_MAX_BODY_BYTES": "65536",
    }
    env.pop("TRIPWIRE_DATABASE_URL", None)
    log = home / "api.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "sensors", "api"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the API did not start: " + log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(20)
        errors = [line for line in log.read_text().splitlines() if "Traceback" in line]
        assert not errors, log.read_text()


def test_the_api_answers_every_generated_request_within_its_own_schema(api_url: str) -> None:
    # Driven from here rather than by schemathesis' pytest plugin, which does not run
    # under pytest 9: one hypothesis run per operation, every failure reported.
    api = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    failures: list[str] = []
    tested = 0
    calls: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    runs = [(op, mode) for op in operations for mode in schemathesis.GenerationMode]
    for operation, mode in runs:
        tested += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            calls.append(operation.label)  # noqa: B023  # called before the loop moves on
            case.call_and_validate(
                base_url=api_url,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_headers_conformance,
                    response_schema_conformance,
                    negative_data_rejection,
                ],
            )

        try:
            check()
        except Unsatisfiable:
            continue  # no parameters: no invalid request to make
        except Exception as exc:
            failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert tested >= 2 * 12 and len(calls) > 200
    assert not failures, "\n\n".join(failures)
