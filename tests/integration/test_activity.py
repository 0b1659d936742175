"""The sensor stage's activity in the run store, on SQLite and PostgreSQL: counts by the
minute that add up, marks kept per sensor, and what is older than the hour deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from sensors.runs.activity import (
    FILTERED,
    MARKS_PER_SENSOR,
    OFFERED,
    ActivityMark,
    add_activity,
    event_counts,
    list_marks,
    offer_counts,
    offers_by_minute,
    prune_activity,
)
from sensors.runs.store import RunStore
from sensors.runs.tables import activity_events, activity_marks, activity_offers

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(second=30, microsecond=0)
MINUTE = NOW.replace(second=0)
EARLIER = MINUTE - timedelta(minutes=20)
HERE = {"project": "p", "domain": "d"}


async def test_the_migration_makes_the_tables_the_schema_declares(run_store: RunStore) -> None:
    def columns(conn: sa.Connection) -> dict[str, list[str]]:
        inspector = sa.inspect(conn)
        return {
            t.name: sorted(c["name"] for c in inspector.get_columns(t.name))
            for t in (activity_events, activity_offers, activity_marks)
        }

    async with run_store.connection() as conn:
        found = await conn.run_sync(columns)
    assert found == {
        t.name: sorted(t.c.keys()) for t in (activity_events, activity_offers, activity_marks)
    }


async def test_counts_add_up_per_minute_across_reports_and_workers(run_store: RunStore) -> None:
    # Given two reports (as from two workers) counting the same minute, and an earlier one
    events = {(MINUTE, "warehouse", "data_updated"): 3, (EARLIER, "warehouse", "data_updated"): 7}
    offers = {(MINUTE, "refresh.trigger", "data_updated"): 2}
    await add_activity(run_store, "p", "d", events=events, offers=offers, marks=[])
    await add_activity(
        run_store,
        "p",
        "d",
        events={(MINUTE, "warehouse", "data_updated"): 4, (MINUTE, "s", "payment"): 1},
        offers={(MINUTE, "refresh.trigger", "data_updated"): 5},
        marks=[],
    )
    # And another project's
    await add_activity(run_store, "other", "d", events=events, offers=offers, marks=[])
    # When the counts since 15 minutes ago are read
    since = NOW - timedelta(minutes=15)
    # Then they add up, without the earlier minute or the other project
    assert await event_counts(run_store, **HERE, since=since) == {
        ("warehouse", "data_updated"): 7,
        ("s", "payment"): 1,
    }
    assert await offer_counts(run_store, **HERE, since=since) == {
        ("refresh.trigger", "data_updated"): 7
    }
    # And from an hour ago the earlier minute counts too
    hour = await event_counts(run_store, **HERE, since=NOW - timedelta(hours=1))
    assert hour[("warehouse", "data_updated")] == 14
    by_minute = await offers_by_minute(
        run_store, **HERE, sensor_id="refresh.trigger", since=NOW - timedelta(hours=1)
    )
    assert by_minute == {"data_updated": {MINUTE: 7}}


def mark(n: int, sensor: str = "s.t", *, filtered: bool = False) -> ActivityMark:
    at = EARLIER + timedelta(seconds=n)
    if filtered:
        return ActivityMark(sensor, "dep", FILTERED, f"e{n}", "too small", at)
    return ActivityMark(sensor, "dep", OFFERED, f"e{n}", None, at)


async def test_marks_read_back_oldest_first_with_their_reasons(run_store: RunStore) -> None:
    given = [mark(1), mark(2, filtered=True), mark(3, sensor="other.t")]
    await add_activity(run_store, "p", "d", events={}, offers={}, marks=given)
    found = await list_marks(run_store, **HERE, sensor_id="s.t", since=EARLIER)
    assert found == given[:2]
    later = await list_marks(
        run_store, **HERE, sensor_id="s.t", since=EARLIER + timedelta(seconds=2)
    )
    assert [m.event_id for m in later] == ["e2"]


async def test_a_sensor_keeps_its_newest_marks_and_nothing_older_than_asked(
    run_store: RunStore,
) -> None:
    # Given more marks of one sensor than it keeps, over two reports, and one of another
    await add_activity(
        run_store, "p", "d", events={}, offers={}, marks=[mark(n) for n in range(150)]
    )
    await add_activity(
        run_store,
        "p",
        "d",
        events={},
        offers={},
        marks=[mark(n) for n in range(150, 300)] + [mark(0, sensor="other.t")],
    )
    # Then a read gets the newest, even before the sensor's marks are capped
    found = await list_marks(run_store, **HERE, sensor_id="s.t", since=EARLIER)
    assert [m.event_id for m in found] == [f"e{n}" for n in range(100, 300)]
    # When the reporter prunes: marks before a time, and all but the newest of the sensor
    await prune_activity(
        run_store, "p", "d", EARLIER + timedelta(seconds=250), capped=["s.t", "other.t"]
    )

    # Then only the newest marks after that time are left, and no other sensor's
    async def left() -> list[str]:
        async with run_store.connection() as conn:
            rows = await conn.execute(
                sa.select(activity_marks.c.event_id, activity_marks.c.sensor_id)
            )
            return sorted(f"{s}:{e}" for e, s in rows)

    assert await left() == sorted(f"s.t:e{n}" for n in range(250, 300))
    # And a sensor with more than it keeps, all recent, keeps only the newest
    await add_activity(
        run_store,
        "p",
        "d",
        events={},
        offers={},
        marks=[mark(n, sensor="busy.t") for n in range(MARKS_PER_SENSOR + 5)],
    )
    await add_activity(run_store, "p", "d", events={}, offers={}, marks=[mark(999, "busy.t")])
    await prune_activity(run_store, "p", "d", EARLIER, capped=["busy.t"])
    kept = await list_marks(run_store, **HERE, sensor_id="busy.t", since=EARLIER)
    assert len(kept) == MARKS_PER_SENSOR and kept[-1].event_id == "e999"
    async with run_store.connection() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).where(activity_marks.c.sensor_id == "busy.t")
        )
    assert count == MARKS_PER_SENSOR


async def test_pruning_deletes_the_counts_of_minutes_before_the_one_given(
    run_store: RunStore,
) -> None:
    events = {(EARLIER, "s", "a"): 1, (MINUTE, "s", "a"): 2}
    offers = {(EARLIER, "x.t", "a"): 1, (MINUTE, "x.t", "a"): 2}
    await add_activity(run_store, "p", "d", events=events, offers=offers, marks=[])
    await add_activity(run_store, "other", "d", events=events, offers=offers, marks=[])
    await prune_activity(run_store, "p", "d", MINUTE + timedelta(seconds=5))
    long_ago = EARLIER - timedelta(hours=1)
    assert await event_counts(run_store, **HERE, since=long_ago) == {("s", "a"): 2}
    assert await offer_counts(run_store, **HERE, since=long_ago) == {("x.t", "a"): 2}
    other = await event_counts(run_store, project="other", domain="d", since=long_ago)
    assert other == {("s", "a"): 3}


async def test_a_source_or_event_id_longer_than_the_columns_is_cut_not_refused(
    run_store: RunStore,
) -> None:
    # Given an event whose source and id are longer than PostgreSQL's columns hold
    source, event_id = "s" * 600, "e" * 300
    long = ActivityMark("s.t", "dep", OFFERED, event_id, None, EARLIER)
    # When it is reported, then it is kept, cut to fit
    # (and another that only differs past what the column holds: the same row once cut)
    events = {(MINUTE, source, "a"): 1, (MINUTE, source + "-other", "a"): 2}
    await add_activity(run_store, "p", "d", events=events, offers={}, marks=[long])
    assert await event_counts(run_store, **HERE, since=MINUTE) == {(source[:500], "a"): 3}
    [mark] = await list_marks(run_store, **HERE, sensor_id="s.t", since=EARLIER)
    assert mark.event_id == event_id[:255]
