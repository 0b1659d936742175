"""triggers.faust: faust reads what publish() and the lifecycle relay write, typed, and writes
what publish() writes. faust lives in its own virtualenv, so the schemas run there
(faust_codec.py) on records made here by tripwire's own encoders."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sensors.runs.models import PhaseChange, RunError
from sensors.runs.phases import ErrorKind
from sensors.stages.lifecycle_relay import lifecycle_record
from tests.fixtures.faust_venv import ROOT, faust_env, faust_python
from triggers.envelope import KafkaRecord, encode, make_envelope
from triggers.errors import ConfigurationError
from triggers.settings import Settings

AT = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)


def _wire(record: KafkaRecord) -> list[Any]:
    """A record as faust_codec.py reads it: bytes as latin-1 text."""
    return [
        record.key.decode("latin-1"),
        record.value.decode("latin-1"),
        [[name, raw.decode("latin-1")] for name, raw in record.headers],
    ]


def _in_faust(events: list[KafkaRecord], run_events: list[KafkaRecord]) -> dict[str, Any]:
    """What the faust schemas make of these records, in the faust virtualenv."""
    records = {"events": [_wire(r) for r in events], "run_events": [_wire(r) for r in run_events]}
    return _faust_run(["-m", "tests.unit.triggers.faust_codec"], faust_env(), json.dumps(records))


def _faust_run(args: list[str], env: dict[str, str], stdin: str = "") -> dict[str, Any]:
    """The JSON the faust virtualenv's Python prints last, run with ``args``."""
    done = subprocess.run(
        [faust_python(), *args],
        input=stdin,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _change(
    phase: str, *, attempt: int | None = None, error: RunError | None = None
) -> KafkaRecord:
    change = PhaseChange(
        id=7,
        project="p",
        domain="d",
        name="refresh-abc",
        flow="refresh",
        attempt=attempt,
        phase=phase,
        at=AT,
        error=error,
    )
    return lifecycle_record(change, Settings(home=ROOT / ".tripwire"))


def test_faust_reads_events_and_run_events_typed_and_writes_events_as_publish_does() -> None:
    # Given an event as publish() writes it, a record that is no CloudEvent, and the
    # lifecycle events the relay writes for a run's success, an attempt and a failure
    envelope, _ = make_envelope(
        "data_updated", {"table": "sales", "rows": 10**20}, id="e-1", source="s", time=AT
    )
    published = encode(envelope)
    stranger = KafkaRecord(key=b"x", value=b'{"a": 1}', headers=[])
    failure = RunError(code="ValueError", kind=ErrorKind.USER, message="bad rows")
    runs = [_change("SUCCEEDED"), _change("RUNNING", attempt=1), _change("FAILED", error=failure)]
    # When faust reads them through triggers.faust's schemas
    seen = _in_faust([published, stranger], [*runs, published])
    # Then the event is typed, with its name as the key and its big integer exact
    event, bad = seen["events"]
    assert event["key"] == "data_updated"
    assert event["value"] == {
        "name": "data_updated",
        "id": "e-1",
        "source": "s",
        "time": AT.isoformat(),
        "payload": {"table": "sales", "rows": 10**20},
        "traceparent": None,
        "tracestate": None,
    }
    # And sent back through the schema it is the very record publish() wrote
    assert event["sent"] == _wire(published)
    # And a record that is not a tripwire event is a decode error that says why
    assert bad["error"].startswith("ValueDecodeError: events[0]@0: record is not a binary-mode")
    # And the run's own success is typed and final, keyed by the run name
    succeeded, attempt, failed, not_a_run = seen["run_events"]
    assert succeeded["key"] == "refresh-abc"
    assert succeeded["value"] == {
        "id": "p.d.phase-7",
        "run_name": "refresh-abc",
        "project": "p",
        "domain": "d",
        "flow": "refresh",
        "phase": "SUCCEEDED",
        "attempt": None,
        "occurred_at": AT.isoformat(),
        "error": None,
        "output_uri": (ROOT / ".tripwire" / "runs" / "refresh-abc").as_uri(),
    }
    assert succeeded["finished"] and succeeded["json_round_trip"]
    # And an attempt's phase is not the run's end; a failure carries its error
    assert attempt["value"]["attempt"] == 1 and not attempt["finished"]
    assert failed["finished"] and failed["value"]["error"]["message"] == "bad rows"
    assert failed["value"]["output_uri"] is None
    # And an event that is not a run's is refused on the run events topic
    assert not_a_run["error"].startswith("ValueDecodeError: event 'e-1' (data_updated) is not a")
    # And a value that would not be a tripwire record is refused, saying what to do; bytes
    # (a record forwarded as it came) pass
    dict_event, forwarded, dict_run = seen["refused"]
    assert dict_event.startswith("PublishError: a tripwire events topic takes TripwireEvent")
    assert "EventPublisher(app).send(name, payload)" in dict_event
    assert forwarded is None
    assert dict_run.startswith("PublishError: tripwire.run-events holds the engine's own")


def test_without_faust_the_module_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "faust", None)  # what an import of a missing package meets
    monkeypatch.delitem(sys.modules, "triggers.faust", raising=False)
    with pytest.raises(ConfigurationError, match=r"pip install 'tripwire\[faust\]'"):
        importlib.import_module("triggers.faust")


_CREDENTIALS = """
import json
from triggers.faust import broker_settings
settings = broker_settings()
credentials = settings["broker_credentials"]
print(json.dumps({
    "broker": settings["broker"],
    "kind": type(credentials).__name__,
    "protocol": credentials.protocol.value if credentials else None,
    "mechanism": getattr(getattr(credentials, "mechanism", None), "value", None),
    "username": getattr(credentials, "username", None),
    "password": getattr(credentials, "password", None),
    "context": type(
        getattr(credentials, "ssl_context", None) or getattr(credentials, "context", None)
    ).__name__,
    "provider": repr(getattr(credentials, "oauth_cb", None)),
}))
"""


def _faust_credentials(tmp_path: Path, **security: str) -> dict[str, Any]:
    env = {k: v for k, v in faust_env().items() if not k.startswith("TRIPWIRE_")}
    env |= {"TRIPWIRE_HOME": str(tmp_path), "TRIPWIRE_KAFKA_BOOTSTRAP": "k1:9093,k2:9093"}
    env |= {f"TRIPWIRE_KAFKA_{k.upper()}": v for k, v in security.items()}
    return _faust_run(["-c", _CREDENTIALS], env)


@pytest.mark.parametrize(
    ("security", "expected"),
    [
        ({}, {"kind": "NoneType", "protocol": None}),
        ({"security_protocol": "SSL"}, {"kind": "SSLCredentials", "context": "SSLContext"}),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "tw",
                "sasl_password": "s3cret",
            },
            {
                "kind": "SASLCredentials",
                "protocol": "SASL_SSL",
                "mechanism": "SCRAM-SHA-512",
                "username": "tw",
                "password": "s3cret",
                "context": "SSLContext",
            },
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": "os:getcwd",
            },
            {
                "kind": "OAuthCredentials",
                "protocol": "SASL_PLAINTEXT",
                "mechanism": "OAUTHBEARER",
                "provider": "TokenProvider('os:getcwd')",
            },
        ),
    ],
)
def test_faust_apps_get_the_broker_and_the_credentials_the_engine_connects_with(
    tmp_path: Path, security: dict[str, str], expected: dict[str, Any]
) -> None:
    seen = _faust_credentials(tmp_path, **security)
    assert seen["broker"] == "kafka://k1:9093;kafka://k2:9093"
    assert {k: seen[k] for k in expected} == expected
