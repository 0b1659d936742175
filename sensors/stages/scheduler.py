"""The scheduler stage: fires the ticks of ``@schedule`` triggers, each tick once.

Every worker runs one, and each scheduled trigger belongs to exactly one worker
at a time: the owner of the events-topic partition its id hashes to, in the
sensor stage's consumer group. Kafka's group protocol is the leader election,
and a trigger moves to another worker on the same rebalance that moves its
partition.

What survives a crash or a change of owner is in the store, per trigger:
``cursor``, the newest tick decided, and ``pending``, the ticks decided but
maybe not yet fired. Deciding is a compare-and-set on the row (two owners for
a moment decide once), and firing is idempotent (a tick's run name is a hash of
the trigger and the tick, created once). So a new owner first fires what its
predecessor left pending: no tick is lost or doubled, whoever crashes when.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from sensors.core.schedule import Plan, next_tick, plan, tick_run_name
from sensors.core.sensor import Sensor, run_policy, slug, target_fields
from sensors.runs.models import NewRun, TriggerFailure
from sensors.runs.outages import log_failure
from sensors.runs.sensor_records import record_trigger_failure
from sensors.runs.service import RunService
from sensors.runs.store import RunStore, utc
from sensors.runs.tables import dialect_insert, schedule_state
from triggers.errors import TriggerError
from triggers.settings import Settings
from triggers.spec import SCHEDULED_AT, ScheduleSpec

__all__ = ["Scheduler", "tick_request"]

log = logging.getLogger(__name__)

_MAX_SLEEP = 1.0  # seconds: how soon a worker notices it gained or lost a trigger


class Scheduler:
    """Decides and fires the due ticks of the scheduled triggers this worker owns."""

    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        runs: RunService,
        owns: Callable[[Sensor], bool],
        sensors: Iterable[Sensor] = (),
    ) -> None:
        self._settings = settings
        self._store = store
        self._runs = runs
        self._owns = owns
        self._grace = timedelta(seconds=settings.schedule_grace)
        self._sensors: list[Sensor] = []
        self._rows: dict[str, dict[str, Any]] = {}  # schedule_state rows, by sensor id
        self.fired = 0
        self.serve(sensors)

    def serve(self, sensors: Iterable[Sensor]) -> None:
        """Schedule the scheduled triggers among ``sensors`` from the next pass on."""
        self._sensors = [s for s in sensors if s.trigger.schedule is not None]
        self._rows = {}  # a changed trigger may start from a new deployment time

    async def run(self, stop: asyncio.Event) -> None:
        """Pass over the owned triggers at each tick (at least every second) until ``stop``."""
        while not stop.is_set():
            now = datetime.now(UTC)
            await self.run_once(now)
            ticks = [next_tick(_spec(s), now) for s in self._sensors if self._owns(s)]
            delay = min([(t - datetime.now(UTC)).total_seconds() for t in ticks] + [_MAX_SLEEP])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.01, delay))

    async def run_once(self, now: datetime) -> None:
        """One pass: decide and fire the due ticks of every owned trigger."""
        for sensor in list(self._sensors):
            if not self._owns(sensor):
                self._rows.pop(sensor.id, None)  # when it comes back, read what others did
                continue
            try:
                await self._advance(sensor, now)
            except Exception:
                # The store or the broker is down: the cursor did not move, the next
                # pass decides these ticks again.
                self._rows.pop(sensor.id, None)
                log_failure(log, "schedule %s: this pass failed; retrying", sensor.id)

    async def _advance(self, sensor: Sensor, now: datetime) -> None:
        # The row is read when the trigger becomes ours and after a lost compare-and-set;
        # in between, only we write it, and a pass with no tick due touches no store.
        row = self._rows.get(sensor.id) or await self._state(sensor)
        if row["pending"]:
            # Decided by an owner that may have crashed before firing them.
            await self._fire(sensor, [datetime.fromisoformat(t) for t in row["pending"]])
            row = await self._settle(sensor, row, row["cursor"], []) or await self._state(sensor)
        self._rows[sensor.id] = row
        # A changed trigger starts at its new deployment: older ticks were another schedule's.
        cursor = max(row["cursor"], sensor.deployed_at)
        decided = plan(_spec(sensor), cursor=cursor, now=now, grace=self._grace)
        if decided is None:
            return
        pending = [t.isoformat() for t in decided.fire]
        settled = await self._settle(sensor, row, decided.cursor, pending)
        if settled is None:
            self._rows.pop(sensor.id, None)
            return  # another worker decided these ticks a moment ago
        self._rows[sensor.id] = settled
        _report_skipped(sensor, decided)
        await self._fire(sensor, decided.fire)
        done = await self._settle(sensor, settled, decided.cursor, [])
        if done is None:
            self._rows.pop(sensor.id, None)
        else:
            self._rows[sensor.id] = done

    async def _fire(self, sensor: Sensor, ticks: Iterable[datetime]) -> None:
        for tick in ticks:
            try:
                request = tick_request(sensor, tick)
            except TriggerError as exc:
                await record_trigger_failure(
                    self._store,
                    TriggerFailure(
                        sensor_id=sensor.id,
                        event_name="schedule",
                        event_id=tick.isoformat(),
                        reason=str(exc),
                        created_at=datetime.now(UTC),
                    ),
                )
                log.error("schedule %s: tick %s launched no run: %s", sensor.id, tick, exc)
                continue
            run, created = await self._runs.submit(request)
            if created:
                self.fired += 1
                log.info("schedule %s: tick %s -> run %s", sensor.id, tick.isoformat(), run.name)

    async def _state(self, sensor: Sensor) -> dict[str, Any]:
        """The trigger's row; created (cursor at its deployment) if it has none."""
        key = _key(sensor)
        async with self._store.connection(write=True) as conn:
            insert = dialect_insert(conn)(schedule_state).values(
                **key,
                cursor=sensor.deployed_at,
                pending=[],
                version=0,
                updated_at=datetime.now(UTC),
            )
            await conn.execute(insert.on_conflict_do_nothing(index_elements=list(key)))
            row = (await conn.execute(sa.select(schedule_state).where(*_where(key)))).one()
        return {**row._mapping, "cursor": utc(row.cursor)}

    async def _settle(
        self, sensor: Sensor, row: dict[str, Any], cursor: datetime, pending: list[str]
    ) -> dict[str, Any] | None:
        """Compare-and-set the row to (cursor, pending); None if another worker wrote first."""
        values = {
            "cursor": cursor,
            "pending": pending,
            "version": row["version"] + 1,
            "updated_at": datetime.now(UTC),
        }
        update = (
            schedule_state.update()
            .where(*_where(_key(sensor)), schedule_state.c.version == row["version"])
            .values(**values)
        )
        try:
            async with self._store.connection(write=True) as conn:
                if (await conn.execute(update)).rowcount != 1:
                    return None
        except IntegrityError:
            return None
        return {**row, **values}


def tick_request(sensor: Sensor, tick: datetime) -> NewRun:
    """The run request of one tick: parameters from the tick, a name from the trigger and tick.

    Raises:
        TriggerError: the tick does not fit a parameter's type.
    """
    spec = _spec(sensor)
    when = tick.astimezone(UTC).isoformat()
    values = dict.fromkeys(spec.parameters, when)
    if SCHEDULED_AT in sensor.parameter_names:
        values.setdefault(SCHEDULED_AT, when)
    return NewRun(
        project=sensor.project,
        domain=sensor.domain,
        name=tick_run_name(
            project=sensor.project,
            domain=sensor.domain,
            flow=sensor.flow.name,
            trigger=sensor.trigger.name,
            revision=sensor.revision,
            tick=tick,
            prefix=slug(sensor.flow.name),
        ),
        flow=sensor.flow.name,
        sensor_id=sensor.id,
        trigger=sensor.trigger.name,
        **target_fields(sensor.flow, sensor.trigger),
        entrypoint=sensor.flow.entrypoint.model_dump(),
        parameters=sensor.schema.coerce(values),
        events=[],
        scheduled_at=tick,
        **run_policy(sensor.trigger),
    )


def _report_skipped(sensor: Sensor, decided: Plan) -> None:
    if decided.skipped:
        log.warning(
            "schedule %s: skipped %d tick(s) missed while no worker ran it, up to %s "
            "(catchup=%r); firing %s",
            sensor.id,
            decided.skipped,
            decided.cursor.isoformat(),
            _spec(sensor).catchup,
            ", ".join(t.isoformat() for t in decided.fire) or "none",
        )


def _spec(sensor: Sensor) -> ScheduleSpec:
    assert sensor.trigger.schedule is not None
    return sensor.trigger.schedule


def _key(sensor: Sensor) -> dict[str, str]:
    return {"project": sensor.project, "domain": sensor.domain, "sensor_id": sensor.id}


def _where(key: dict[str, str]) -> list[Any]:
    return [schedule_state.c[k] == v for k, v in key.items()]
