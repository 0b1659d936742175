"""Typed signals: a run waits for an event (``wait_for_event``), anyone signals it (``Event``).

Inside a run, ``wait_for_event("approval", type=bool, timeout="1h")`` records the
wait in the run store and returns the value once someone signals it; the run
stays RUNNING meanwhile. Outside, ``Event.get``, ``Event.listall`` and
``event.signal`` find and signal waits, from Python here, or with ``tripwire
events list|signal``. Every call is synchronous, and has an awaitable
``.aio(...)`` form.

Signals are kept in the run store, so one given while no worker runs is not
lost: the waiting run reads it from there. The SDK reaches the store through the
HTTP API when ``TRIPWIRE_API_URL`` is set (with ``TRIPWIRE_API_TOKEN``), as a run in
a pod does, and directly otherwise (:class:`~triggers.waits.SignalBackend`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from triggers.current import current
from triggers.errors import ConfigurationError, SignalError, SignalTimeoutError
from triggers.spec import parse_duration
from triggers.waits import SIGNAL_TYPES, Signal, SignalBackend, SignalPhase, check_value

if TYPE_CHECKING:
    from triggers.settings import Settings

__all__ = ["Condition", "Event", "wait_for_event"]

_TYPES = {kind: name for name, kind in SIGNAL_TYPES.items()}


def _sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion from synchronous code, inside an event loop or not."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called synchronously from async code: a loop of its own, in a thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class _Dual:
    """A call that is synchronous, with an awaitable ``.aio(...)`` form; binds like a method
    (to the instance, or to the class when looked up on it)."""

    def __init__(self, func: Callable[..., Coroutine[Any, Any, Any]], bound: Any = None) -> None:
        self._func = func
        self._bound = bound
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> _Dual:
        return _Dual(self._func, obj if obj is not None else owner)

    def aio(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        if self._bound is None:
            return self._func(*args, **kwargs)
        return self._func(self._bound, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _sync(self.aio(*args, **kwargs))


def _backend(settings: Settings) -> SignalBackend:
    """Where the waits are: the HTTP API when TRIPWIRE_API_URL is set, else the run store,
    through the backend that tripwire's engine installs (entry point ``signals`` of
    ``tripwire.backends``), so that the SDK imports no engine module."""
    if settings.api_url:
        from triggers.api_signals import ApiSignals  # httpx: only where it is used

        return ApiSignals(settings)
    open_backend = _installed_backend()
    if open_backend is None:
        raise ConfigurationError(
            "signals need run state, and none is configured: set TRIPWIRE_API_URL (and "
            "TRIPWIRE_API_TOKEN) to reach it through the tripwire API, or install tripwire's "
            "engine (`pip install tripwire`) to reach the run store directly"
        )
    return open_backend(settings)


@functools.cache
def _installed_backend() -> Callable[[Settings], SignalBackend] | None:
    """The engine's store backend, looked up once: the look-up reads every installed
    package's metadata."""
    from importlib.metadata import entry_points  # 12 ms: only for signals

    found = entry_points(group="tripwire.backends", name="signals")
    if not found:
        return None
    backend: Callable[[Settings], SignalBackend] = next(iter(found)).load()
    return backend


def _scope(settings: Settings, project: str | None, domain: str | None) -> dict[str, str]:
    return {"project": project or settings.project, "domain": domain or settings.domain}


class Event:
    """An event a run waits for (or waited for), as ``Event.get`` and ``Event.listall`` find it.

    Attributes: ``name``, ``run_name``, ``action_name``, ``phase`` (RUNNING while the
    run waits, then SUCCEEDED, TIMED_OUT, ABORTED or FAILED), ``expected_type``
    (bool, int, float or str), ``value`` once signalled, ``project``, ``domain``,
    ``created_at``, ``timeout_at`` and ``signalled_at``.
    """

    def __init__(self, record: Signal) -> None:
        self._record = record

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def run_name(self) -> str:
        return self._record.run_name

    @property
    def action_name(self) -> str | None:
        return self._record.action_name

    @property
    def phase(self) -> str:
        return self._record.phase.value

    @property
    def expected_type(self) -> type:
        return SIGNAL_TYPES[self._record.expected_type]

    @property
    def value(self) -> bool | int | float | str | None:
        return self._record.value

    @property
    def project(self) -> str:
        return self._record.project

    @property
    def domain(self) -> str:
        return self._record.domain

    @property
    def created_at(self) -> datetime:
        return self._record.created_at

    @property
    def timeout_at(self) -> datetime | None:
        return self._record.timeout_at

    @property
    def signalled_at(self) -> datetime | None:
        return self._record.signalled_at

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return self._record.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def __repr__(self) -> str:
        return (
            f"Event(name={self.name!r}, run_name={self.run_name!r}, phase={self.phase!r}, "
            f"expected_type={self._record.expected_type})"
        )

    async def _get(
        cls: type[Event] | Event,
        name: str,
        run_name: str,
        action_name: str | None = None,
        *,
        project: str | None = None,
        domain: str | None = None,
    ) -> Event | None:
        """The event ``name`` that run ``run_name`` waits (or waited) for; None if none."""
        settings = _settings()
        async with _backend(settings) as backend:
            record = await backend.get_signal(
                **_scope(settings, project, domain),
                run_name=run_name,
                name=name,
                action_name=action_name,
            )
        return Event(record) if record is not None else None

    async def _listall(
        cls: type[Event] | Event,
        run_name: str,
        action_name: str | None = None,
        limit: int = 100,
        *,
        project: str | None = None,
        domain: str | None = None,
    ) -> Iterator[Event]:
        """The events run ``run_name`` waits or waited for, oldest first."""
        settings = _settings()
        async with _backend(settings) as backend:
            records = await backend.list_signals(
                **_scope(settings, project, domain),
                run_name=run_name,
                action_name=action_name,
                limit=limit,
            )
        return iter([Event(r) for r in records])

    async def _signal(self: Event, payload: bool | int | float | str) -> Event:
        """Give the waiting run ``payload``; return the event, now SUCCEEDED.

        Raises:
            TypeError: ``payload`` is not a bool, int, float or str, or not the
                event's ``expected_type``.
            SignalError: the event was signalled already, or the run no longer waits.
        """
        what = f"event {self.name!r} of run {self.run_name!r}"
        check_value(self._record.expected_type, payload, what=what)  # before any I/O
        async with _backend(_settings()) as backend:
            record = await backend.give_signal(
                project=self.project,
                domain=self.domain,
                run_name=self.run_name,
                name=self.name,
                action_name=self.action_name,
                value=payload,
            )
        self._record = record
        return self

    get = _Dual(_get)
    listall = _Dual(_listall)
    signal = _Dual(_signal)


Condition = Event
"""Flyte 2's name for an :class:`Event` a run waits for (``flyte.remote.Condition``, once
``flyte.remote.Event``): the same class, so code written with either name works."""


async def _wait_for_event(
    name: str,
    type: type = bool,
    timeout: str | float | timedelta | None = None,
    *,
    action_name: str | None = None,
) -> Any:
    """Pause the run until event ``name`` is signalled; return the signalled value.

    Args:
        name: the event's name, unique within the run (and action).
        type: what the signal carries: bool, int, float or str.
        timeout: how long to wait ("1h"); default for ever (the run's own timeout
            still applies).
        action_name: which part of the run waits, when several wait for one name.

    Raises:
        SignalTimeoutError: nothing was signalled within ``timeout``; unhandled, the run
            fails with a USER error.
        SignalError: the run ended or was aborted while waiting.
        ConfigurationError: not inside a run the engine started.
        TypeError: ``type`` is not bool, int, float or str.
    """
    if type not in _TYPES:
        raise TypeError(f"wait_for_event type must be bool, int, float or str, not {type!r}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"wait_for_event needs an event name, not {name!r}")
    run_name = current.run_name
    if run_name is None or current.project is None or current.domain is None:
        raise ConfigurationError(
            f"wait_for_event({name!r}) works inside a run the engine started; run the flow "
            "with `tripwire runs create FLOW` or by an event, not as plain Python."
        )
    limit = parse_duration(timeout, what="timeout") if timeout is not None else None
    deadline = datetime.now(UTC) + limit if limit is not None else None
    key: dict[str, Any] = {"project": current.project, "domain": current.domain}
    key |= {"run_name": run_name, "name": name, "action_name": action_name}
    settings = _settings()
    async with _backend(settings) as backend:
        record = await backend.wait_started(**key, expected_type=_TYPES[type], timeout_at=deadline)
        if record.phase == SignalPhase.RUNNING:
            print(
                f"tripwire: run {run_name} waits for event {name!r} ({_TYPES[type]}); signal it "
                f"with `tripwire events signal {name} --run {run_name} --value ...`",
                flush=True,
            )
        while record.phase == SignalPhase.RUNNING:
            if deadline is not None and datetime.now(UTC) >= deadline:
                record = await backend.time_out(**key)
                break
            await asyncio.sleep(settings.signal_poll_interval)
            found = await backend.get_signal(**key)
            assert found is not None  # waits are never deleted
            record = found
    if record.phase == SignalPhase.SUCCEEDED:
        return type(record.value)
    if record.phase == SignalPhase.TIMED_OUT:
        raise SignalTimeoutError(
            f"no signal for event {name!r} of run {run_name!r} within {limit}; signal it "
            f"sooner with `tripwire events signal {name} --run {run_name} --value ...`, or "
            "give wait_for_event a longer timeout"
        )
    raise SignalError(f"event {name!r} of run {run_name!r} is {record.phase}: the wait ended")


wait_for_event = _Dual(_wait_for_event)


def _settings() -> Settings:
    from triggers.settings import get_settings  # built on first use, not at import

    return get_settings()
