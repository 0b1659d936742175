"""`tripwire sensors list|status` as people read them: held events by key, import errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from sensors.cli.render import print_import_problems, print_statuses
from sensors.queries.sensors import DependencyStatus, KeyStatus, SensorStatus
from sensors.runs.import_problems import ImportProblem
from sensors.runs.models import DeployedSensor, Hold

AT = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DEPS = ["payment_received", "parcel_packed"]


def console() -> Console:
    return Console(record=True, width=200, color_system=None)


def held(key: str, dep: str, event_id: str) -> Hold:
    return Hold(
        sensor_id="ship.trigger",
        key=key,
        dep=dep,
        event_id=event_id,
        event_time=AT,
        expires_at=AT + timedelta(hours=1),
    )


def test_a_correlated_sensor_lists_its_keys_and_says_no_dependency_is_satisfied() -> None:
    # Given a payment held for order 7 and a packed parcel for order 8
    payment, parcel = held("7", "payment_received", "e1"), held("8", "parcel_packed", "e2")
    sensor = DeployedSensor(
        project="p",
        domain="d",
        sensor_id="ship.trigger",
        flow="ship",
        trigger="trigger",
        dependencies=[{"dep": d, "name": d} for d in DEPS],
        within_seconds=3600,
        correlate_by=dict.fromkeys(DEPS, "$.order"),
        deployed_at=AT,
        updated_at=AT,
    )
    status = SensorStatus(
        sensor=sensor,
        dependencies=[
            DependencyStatus(dep=d, event=d, state="satisfied", held=[h], filtered=None)
            for d, h in zip(DEPS, (payment, parcel), strict=True)
        ],
        keys=[
            KeyStatus(key="8", held=[parcel], awaited=["payment_received"]),
            KeyStatus(key="7", held=[payment], awaited=["parcel_packed"]),
        ],
        last_run=None,
        failures=[],
    )
    # When `sensors status` prints it
    shown = console()
    print_statuses(shown, [status], as_json=False)
    text = shown.export_text()
    # Then each key says what it holds and awaits, with the held event's id and expiry
    assert "key 8: parcel_packed ✓, payment_received awaited" in text
    assert "key 7: payment_received ✓, parcel_packed awaited" in text
    assert "payment_received holds e1 from 2026-11-23T08:00:00+00:00, expires" in text
    assert "satisfied" not in text and text.count("held for 1 key") == 2


def test_import_errors_are_listed_with_file_line_and_error() -> None:
    problem = ImportProblem(
        path="flows/bad.py",
        line=3,
        error="NameError: name 'x' is not defined",
        traceback="Traceback ...",
        seen_at=AT,
    )
    shown = console()
    print_import_problems(shown, [problem])
    assert "flows/bad.py:3: NameError: name 'x' is not defined" in shown.export_text()
