"""Properties over what users hand tripwire (tests/strategies.py): any record decodes or
gets a clear EventDecodeError; any declaration builds a trigger or a clear DeclarationError,
and a trigger that builds also survives the trip to a worker and becomes a sensor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings

from sensors.core.sensor import build_sensors
from tests.strategies import declarations, records
from triggers import trigger
from triggers.declarations import flow_spec
from triggers.envelope import decode
from triggers.errors import DeclarationError, EventDecodeError
from triggers.spec import FlowSpec


@settings(max_examples=500)
@given(records())
def test_a_record_decodes_to_an_event_or_says_why_not(
    record: tuple[bytes | None, tuple[tuple[str, bytes | None], ...]],
) -> None:
    value, headers = record
    try:
        envelope = decode(value, headers)
    except EventDecodeError as exc:
        assert str(exc)
        return
    assert isinstance(envelope.payload, dict) and envelope.name and envelope.id


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(declarations())
def test_a_declaration_builds_a_sensor_or_says_what_is_wrong(kwargs: dict[str, Any]) -> None:
    def flow(k: str = "", amount: float = 0) -> None: ...

    try:
        trigger(**kwargs)(flow)
    except DeclarationError as exc:
        assert str(exc)
        return
    spec = flow_spec(flow)
    assert FlowSpec.model_validate_json(spec.model_dump_json()) == spec
    [sensor] = build_sensors([spec], project="p", domain="d", deployed_at=datetime.now(UTC))
    assert sensor.trigger.kind in {"all", "threshold", "sequence", "absence"}
    sensor.trigger.condition()
