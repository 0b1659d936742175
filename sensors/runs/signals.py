"""Signals: the events a run waits for (``wait_for_event``) and the values they get.

Companion of :mod:`sensors.runs.store`. A wait is a row, keyed by the run, an
optional action name and the event name. It is RUNNING while the run waits and
SUCCEEDED once signalled, with the value. A signal is a compare-and-set from
RUNNING, so an event is signalled at most once, and it is kept in the store:
a signal given while no worker runs is there when the run looks.

:class:`StoreSignals` is how the SDK (``Event``, ``wait_for_event``) reaches these
rows without the HTTP API: the ``signals`` entry point of group ``tripwire.backends``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from sensors.runs.store import RunStore, utc_row
from sensors.runs.tables import dialect_insert, run_signals
from triggers.errors import SignalError, SignalNotFoundError
from triggers.settings import Settings
from triggers.waits import Signal, SignalPhase, check_value

__all__ = [
    "StoreSignals",
    "get_signal",
    "give_signal",
    "list_signals",
    "time_out",
    "wait_started",
    "waiting_for",
]


async def wait_started(
    store: RunStore,
    *,
    project: str,
    domain: str,
    run_name: str,
    name: str,
    expected_type: str,
    timeout_at: datetime | None,
    action_name: str | None = None,
) -> Signal:
    """Record that the run waits for ``name``; return the wait as it now stands.

    A wait already signalled (by an earlier attempt, or a signal that came first)
    is returned as it is. One that ended unsignalled waits again.

    Raises:
        TypeError: the run waited for this event with another type before.
    """
    now = datetime.now(UTC)
    key = _key(project, domain, run_name, action_name, name)
    async with store.connection(write=True) as conn:
        insert = dialect_insert(conn)(run_signals).values(
            **key,
            expected_type=expected_type,
            phase=SignalPhase.RUNNING.value,
            created_at=now,
            updated_at=now,
            timeout_at=timeout_at,
        )
        await conn.execute(insert.on_conflict_do_nothing(index_elements=list(key)))
        row = (await conn.execute(sa.select(run_signals).where(*_where(key)))).mappings().one()
        signal = _signal(row)
        if signal.expected_type != expected_type:
            raise TypeError(
                f"run {run_name!r} waited for event {name!r} as a {signal.expected_type} "
                f"before; wait for it as that type, or use another name"
            )
        if signal.phase not in (SignalPhase.RUNNING, SignalPhase.SUCCEEDED):
            again = {"phase": SignalPhase.RUNNING.value, "timeout_at": timeout_at}
            again |= {"created_at": now, "updated_at": now}
            await conn.execute(run_signals.update().where(*_where(key)).values(**again))
            signal = signal.model_copy(update={**again, "phase": SignalPhase.RUNNING})
    return signal


async def get_signal(
    store: RunStore,
    *,
    project: str,
    domain: str,
    run_name: str,
    name: str,
    action_name: str | None = None,
) -> Signal | None:
    """The wait for ``name`` in the run, or None if the run never waited for it."""
    key = _key(project, domain, run_name, action_name, name)
    async with store.connection() as conn:
        row = (await conn.execute(sa.select(run_signals).where(*_where(key)))).mappings().first()
    return _signal(row) if row is not None else None


async def list_signals(
    store: RunStore,
    *,
    project: str,
    domain: str,
    run_name: str,
    action_name: str | None = None,
    limit: int = 100,
) -> list[Signal]:
    """The run's waits (of one action, if given), oldest first."""
    query = (
        sa.select(run_signals)
        .where(
            run_signals.c.project == project,
            run_signals.c.domain == domain,
            run_signals.c.run_name == run_name,
        )
        .order_by(run_signals.c.created_at, run_signals.c.name)
        .limit(limit)
    )
    if action_name is not None:
        query = query.where(run_signals.c.action_name == action_name)
    async with store.connection() as conn:
        return [_signal(r) for r in (await conn.execute(query)).mappings()]


async def waiting_for(
    store: RunStore,
    *,
    project: str,
    domain: str,
    run_name: str,
    name: str,
    action_name: str | None = None,
) -> Signal:
    """The wait for ``name`` in the run.

    Raises:
        SignalNotFoundError: the run never waited for it; the message says how to list
            what it waits for.
    """
    found = await get_signal(
        store, project=project, domain=domain, run_name=run_name, name=name, action_name=action_name
    )
    if found is None:
        raise SignalNotFoundError(
            f"run {run_name!r} does not wait for an event {name!r} in {project}/{domain}; "
            f"list what it waits for with `tripwire events list --run {run_name}`"
        )
    return found


async def give_signal(
    store: RunStore,
    *,
    project: str,
    domain: str,
    run_name: str,
    name: str,
    value: Any,
    action_name: str | None = None,
) -> Signal:
    """Signal ``value`` to the run waiting for ``name``; return the signalled wait.

    Raises:
        SignalNotFoundError: the run does not wait for ``name``.
        SignalError: its wait is over (signalled already, timed out, or the run ended).
        TypeError: ``value`` is not of the type the run waits for.
    """
    where = f"event {name!r} of run {run_name!r}"
    current = await waiting_for(
        store, project=project, domain=domain, run_name=run_name, name=name, action_name=action_name
    )
    value = check_value(current.expected_type, value, what=where)
    now = datetime.now(UTC)
    key = _key(project, domain, run_name, action_name, name)
    update = (
        run_signals.update()
        .where(
            *_where(key),
            run_signals.c.phase == SignalPhase.RUNNING.value,
            sa.or_(run_signals.c.timeout_at.is_(None), run_signals.c.timeout_at > now),
        )
        .values(phase=SignalPhase.SUCCEEDED.value, value=value, signalled_at=now, updated_at=now)
    )
    async with store.connection(write=True) as conn:
        changed = (await conn.execute(update)).rowcount == 1
    if changed:
        return current.model_copy(
            update={"phase": SignalPhase.SUCCEEDED, "value": value, "signalled_at": now}
        )
    latest = await get_signal(
        store, project=project, domain=domain, run_name=run_name, name=name, action_name=action_name
    )
    assert latest is not None  # waits are never deleted
    if latest.phase == SignalPhase.SUCCEEDED:
        raise SignalError(
            f"{where} was signalled already, with {latest.value!r} at {latest.signalled_at}; "
            "a signal is given once"
        )
    if latest.phase == SignalPhase.RUNNING:
        raise SignalError(f"{where} timed out at {latest.timeout_at}; the run no longer waits")
    raise SignalError(f"{where} is {latest.phase}: the run no longer waits for it")


async def time_out(
    store: RunStore,
    *,
    project: str,
    domain: str,
    run_name: str,
    name: str,
    action_name: str | None = None,
) -> Signal:
    """End a wait that is still RUNNING as TIMED_OUT; return the wait as it now stands
    (SUCCEEDED if a signal won the race)."""
    key = _key(project, domain, run_name, action_name, name)
    now = datetime.now(UTC)
    update = (
        run_signals.update()
        .where(*_where(key), run_signals.c.phase == SignalPhase.RUNNING.value)
        .values(phase=SignalPhase.TIMED_OUT.value, updated_at=now)
    )
    async with store.connection(write=True) as conn:
        await conn.execute(update)
        row = (await conn.execute(sa.select(run_signals).where(*_where(key)))).mappings().one()
    return _signal(row)


class StoreSignals:
    """The SDK's :class:`~triggers.waits.SignalBackend` on the run store of ``settings``,
    for the embedded and local modes; opened and closed by ``async with``."""

    def __init__(self, settings: Settings) -> None:
        self._url = settings.store_url
        self._store: RunStore | None = None

    async def __aenter__(self) -> StoreSignals:
        self._store = await RunStore.open(self._url, migrate=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    @property
    def store(self) -> RunStore:
        assert self._store is not None, "use StoreSignals as `async with StoreSignals(...)`"
        return self._store

    # Each is the function of the same name, on this store; the keywords are the same.
    async def get_signal(self, **key: Any) -> Signal | None:
        return await get_signal(self.store, **key)

    async def list_signals(self, **key: Any) -> list[Signal]:
        return await list_signals(self.store, **key)

    async def give_signal(self, **key: Any) -> Signal:
        return await give_signal(self.store, **key)

    async def wait_started(self, **key: Any) -> Signal:
        return await wait_started(self.store, **key)

    async def time_out(self, **key: Any) -> Signal:
        return await time_out(self.store, **key)


def _key(
    project: str, domain: str, run_name: str, action_name: str | None, name: str
) -> dict[str, str]:
    return {
        "project": project,
        "domain": domain,
        "run_name": run_name,
        "action_name": action_name or "",
        "name": name,
    }


def _where(key: dict[str, str]) -> list[Any]:
    return [run_signals.c[k] == v for k, v in key.items()]


def _signal(row: Any) -> Signal:
    data = utc_row(row)
    data["action_name"] = data["action_name"] or None
    return Signal.model_validate(data)
