"""Signals through the HTTP API (TRIPWIRE_API_URL): what a run in a pod does, with a token and
no database credentials. Runs, the API, the broker and the store are all real; the
awaitable forms are in test_signals.py, on the store and through the API alike.

A sync call is made from a thread, as a plain script makes it: the API serves on this
test's event loop, which a sync call made on the loop would block.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from sensors.api import ApiServer
from sensors.runs.phases import ErrorKind, WorkflowPhase
from sensors.runs.store import RunStore
from tests.fixtures.engine import Api, api_settings, finished_run
from tests.fixtures.signals import inside, use_api, waiting_run
from tests.fixtures.waits import eventually
from tests.integration.flows.signal_flows import signal_note
from triggers import (
    ConfigurationError,
    Event,
    SignalError,
    SignalTimeoutError,
    publish,
    wait_for_event,
)
from triggers.errors import RunNotFoundError

pytestmark = pytest.mark.integration


async def waiting(name: str, run_name: str, action_name: str | None = None) -> Event | None:
    """The event ``name`` of the run, once the run waits for it."""
    found = await Event.get.aio(name, run_name, action_name)
    return found if found is not None and found.phase == "RUNNING" else None


async def test_a_run_waits_and_is_signalled_through_the_api_with_a_publish_token(
    api: Api, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the SDK and the run both reach run state through the API, with a publish token
    use_api(monkeypatch, api.url, api.tokens["publish"])
    event_id = await publish.aio("needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    # When a script finds the wait, with the sync form
    event = await asyncio.to_thread(Event.get, "approval", run.name)
    assert event is not None
    assert (event.name, event.run_name, event.action_name) == ("approval", run.name, None)
    assert (event.phase, event.expected_type, event.value) == ("RUNNING", bool, None)
    # Then a value of the wrong type is refused, and the right one reaches the run
    with pytest.raises(TypeError, match="expects a bool, not str 'yes'"):
        await asyncio.to_thread(event.signal, "yes")
    assert (await asyncio.to_thread(event.signal, True)).phase == "SUCCEEDED"
    done = await finished_run(store, event_id)
    assert done.phase == WorkflowPhase.SUCCEEDED, done.error
    assert signal_note(run.name).read_text() == "True"
    # And a second signal is refused, naming the first
    with pytest.raises(SignalError, match="was signalled already, with True"):
        await asyncio.to_thread(event.signal, False)
    # And what no run waits for is None, as from the store
    assert await asyncio.to_thread(Event.get, "no_such_event", run.name) is None
    assert await asyncio.to_thread(Event.get, "approval", "no-such-run") is None
    # And listing a run's waits needs a read token, and says so
    with pytest.raises(ConfigurationError, match=r"refused the token \(403"):
        await asyncio.to_thread(Event.listall, run.name)
    monkeypatch.setenv("TRIPWIRE_API_TOKEN", api.tokens["read"])
    listed = await asyncio.to_thread(lambda: list(Event.listall(run.name)))
    assert [(e.name, e.phase, e.value) for e in listed] == [("approval", "SUCCEEDED", True)]


async def test_wait_for_event_through_the_api_in_both_forms(
    api: Api, store: RunStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a running run, and this process as a part of it, on a publish token
    use_api(monkeypatch, api.url, api.tokens["publish"])
    event_id = await publish.aio("needs_approval", {})
    run = await waiting_run(store, event_id, "approval")
    with inside(run.name, run.project, run.domain):
        # When a part of it waits for a budget, synchronously (flow code in a thread)
        budget = asyncio.create_task(
            asyncio.to_thread(
                wait_for_event, "budget", type=float, timeout="60s", action_name="spend"
            )
        )
        event = await eventually(lambda: waiting("budget", run.name, "spend"), "the budget wait")
        # Then waiting for it as another type is refused
        with pytest.raises(TypeError, match="as a float before"):
            await wait_for_event.aio("budget", type=int, action_name="spend")
        # And signalled an int, it returns the float
        await event.signal.aio(2)
        assert await asyncio.wait_for(budget, 30) == 2.0
        # When a wait is awaited instead, it returns the value, and told how to give it
        count = asyncio.create_task(wait_for_event.aio("count", type=int, timeout="60s"))
        event = await eventually(lambda: waiting("count", run.name), "the count wait")
        await event.signal.aio(7)
        assert await asyncio.wait_for(count, 30) == 7
        assert f"run {run.name} waits for event 'count' (int)" in capsys.readouterr().out
        # And one nobody signals times out through the API, in both forms
        with pytest.raises(SignalTimeoutError, match="no signal for event 'late'"):
            await wait_for_event.aio("late", type=str, timeout="1s")
        with pytest.raises(SignalTimeoutError, match="no signal for event 'later'"):
            await asyncio.to_thread(wait_for_event, "later", type=str, timeout="1s")
    for name in ("late", "later"):
        ended = await Event.get.aio(name, run.name)
        assert ended is not None and ended.phase == "TIMED_OUT"
    # And the run's own wait is untouched: signalled, the run succeeds
    approval = await Event.get.aio("approval", run.name)
    assert approval is not None
    await approval.signal.aio(True)
    assert (await finished_run(store, event_id)).phase == WorkflowPhase.SUCCEEDED


async def test_a_run_whose_token_the_api_refuses_fails_saying_what_to_set(
    api: Api, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given runs that reach run state through the API with a token it does not know
    use_api(monkeypatch, api.url, "tw_not-a-token")
    # When a run waits for a signal
    run = await finished_run(store, await publish.aio("needs_approval", {}))
    # Then it fails as USER, naming the API and the setting, not reaching for the store
    assert run.phase == WorkflowPhase.FAILED and run.error is not None
    assert (run.error.kind, run.error.code) == (ErrorKind.USER, "ConfigurationError")
    assert f"the tripwire API at {api.url} refused the token (401" in run.error.message
    assert "set TRIPWIRE_API_TOKEN" in run.error.message


async def test_a_refused_token_says_which_api_refused_it_and_what_to_set(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, api.url, "tw_not-a-token")
    with pytest.raises(ConfigurationError) as unknown:
        await Event.get.aio("approval", "flow-abc")
    message = str(unknown.value)
    assert f"the tripwire API at {api.url} refused the token (401: invalid token" in message
    assert "set TRIPWIRE_API_TOKEN to a token it accepts" in message
    with pytest.raises(ConfigurationError, match=r"refused the token \(401"):
        await asyncio.to_thread(Event.get, "approval", "flow-abc")
    # A token of another project is refused for this one
    monkeypatch.setenv("TRIPWIRE_API_TOKEN", api.tokens["other"])
    with pytest.raises(ConfigurationError, match=r"refused the token \(403.*may use only projects"):
        await Event.get.aio("approval", "flow-abc")
    # And no token at all says what to send
    monkeypatch.delenv("TRIPWIRE_API_TOKEN")
    with pytest.raises(ConfigurationError, match=r"missing credentials.*set TRIPWIRE_API_TOKEN"):
        await Event.listall.aio("flow-abc")


async def test_waiting_as_a_run_the_api_does_not_know_names_the_run(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, api.url, api.tokens["publish"])
    with inside("no-such-run", "p", "d"), pytest.raises(RunNotFoundError, match="no run named"):
        await wait_for_event.aio("approval")


async def test_a_url_that_is_not_the_apis_base_says_what_to_set(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_api(monkeypatch, f"{api.url}/tripwire", api.tokens["admin"])
    with pytest.raises(ConfigurationError, match=r"has no route GET .*is its base URL"):
        await Event.get.aio("approval", "flow-abc")


async def test_an_unreachable_api_names_the_url_and_what_to_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        use_api(monkeypatch, url, "tw_any")
        monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
        expected = rf"the tripwire API at {url} is unreachable .*check TRIPWIRE_API_URL"
        with pytest.raises(ConfigurationError, match=expected):
            await Event.get.aio("approval", "flow-abc")
        with pytest.raises(ConfigurationError, match=expected):
            await asyncio.to_thread(Event.listall, "flow-abc")
        with inside("flow-abc", "p", "d"):
            with pytest.raises(ConfigurationError, match=expected):
                await wait_for_event.aio("approval")
            with pytest.raises(ConfigurationError, match=expected):
                await asyncio.to_thread(wait_for_event, "approval")


async def test_a_rate_limited_call_is_made_again_after_retry_after(
    engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an API that allows a token one request a second
    settings, tokens = api_settings(api_rate_limit=1, api_rate_burst=1)
    server = ApiServer(settings)
    url = await server.start()
    try:
        use_api(monkeypatch, url, tokens["read"])
        # When the token makes two at once, then the second waits its turn instead of failing
        started = time.monotonic()
        assert await Event.get.aio("approval", "flow-abc") is None
        assert await Event.get.aio("approval", "flow-abc") is None
        assert time.monotonic() - started >= 0.9  # the API's Retry-After: 1 second
    finally:
        await server.stop()
