"""wait_for_event's checks that need no store, and how the SDK finds run state."""

from __future__ import annotations

import importlib.metadata
from importlib.metadata import EntryPoints
from pathlib import Path

import pytest

from sensors.runs.signals import StoreSignals
from triggers import ConfigurationError, Event, signals, wait_for_event
from triggers.api_signals import ApiSignals
from triggers.current import current
from triggers.settings import Settings
from triggers.signals import _backend


def test_waiting_outside_a_run_says_how_to_start_one() -> None:
    current._bind(None)
    with pytest.raises(ConfigurationError, match="works inside a run the engine started"):
        wait_for_event("approval", type=bool)


@pytest.mark.parametrize("kind", [list, dict, bytes])
def test_a_signal_type_other_than_bool_int_float_str_is_refused(kind: type) -> None:
    with pytest.raises(TypeError, match="must be bool, int, float or str"):
        wait_for_event("approval", type=kind)


async def test_the_sync_form_works_inside_an_event_loop_too() -> None:
    current._bind(None)
    with pytest.raises(ConfigurationError):
        wait_for_event("approval")  # called synchronously from a coroutine
    with pytest.raises(ConfigurationError):
        await wait_for_event.aio("approval")


def test_without_an_api_url_the_sdk_reaches_the_store_through_the_engines_entry_point(
    tmp_path: Path,
) -> None:
    assert isinstance(_backend(Settings(home=tmp_path, api_url=None)), StoreSignals)
    with_api = Settings(home=tmp_path, api_url="http://127.0.0.1:8080")
    assert isinstance(_backend(with_api), ApiSignals)


def test_without_an_api_url_or_the_engine_it_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Given an SDK without tripwire's engine: no backend registered under its entry point
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: EntryPoints(()))
    signals._installed_backend.cache_clear()  # looked up once per process
    request.addfinalizer(signals._installed_backend.cache_clear)
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    monkeypatch.delenv("TRIPWIRE_API_URL", raising=False)
    with pytest.raises(ConfigurationError) as raised:
        Event.get("approval", "flow-abc")
    assert "set TRIPWIRE_API_URL (and TRIPWIRE_API_TOKEN)" in str(raised.value)
    assert "install tripwire's engine" in str(raised.value)
