"""A partition's log and changelog in the pure core: what a replay applies (only the current
owner's records, in order, whole batches, of the deployed definition), the watermark the
marks give, and the property that a takeover decides exactly as an uninterrupted owner."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sensors.core.changelog import Clock, PartitionLog, correlate
from sensors.core.correlator import Correlator
from sensors.core.router import Router
from sensors.core.sensor import Sensor
from sensors.core.types import Arrival
from sensors.core.wire import (
    Snapshot,
    decode_entry,
    decode_offers_record,
    decode_snapshot,
    encode_keyed,
    encode_marks,
    encode_snapshot,
    pack,
)
from tests.fixtures.core import T0, arrival, sensors
from triggers import trigger

SOURCE = "tripwire.events:0"
LIMIT = 1 << 20


@trigger(events=["orders", "customers"], correlate_by="$.day", within="10m")
def daily(day: str = "") -> None: ...


@trigger(event="failed", threshold=3, within="5m", correlate_by="$.day")
def alarm(day: str = "") -> None: ...


@trigger(event="landed", debounce="30s", correlate_by="$.day")
def ingest(day: str = "") -> None: ...


@trigger(absent="heartbeat", within="2m")
def watchdog() -> None: ...


FLOWS = (daily, alarm, ingest, watchdog)
DEPLOYED = sensors(*FLOWS, deployed_at=T0 - timedelta(hours=1))


def ms(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


def offers_record(*arrivals: Arrival, deployed: list[Sensor] = DEPLOYED) -> bytes:
    [(_, record)] = encode_keyed(Router(deployed).route(list(arrivals)).offers, 1, LIMIT)
    return record


def mark_record(seconds: float) -> bytes:
    return encode_marks({SOURCE: ms(seconds)})


class Owner:
    """One owner of offers partition 0: a correlator and the partition's log."""

    def __init__(self, deployed: list[Sensor] = DEPLOYED) -> None:
        self.correlator = Correlator(s for s in deployed if s.stateful)
        self.log = PartitionLog(0, {SOURCE})

    def handle(
        self, records: list[tuple[int, bytes]], limit: int = LIMIT
    ) -> tuple[set[str], list[bytes]]:
        """Correlate a batch; return the run names it fires and its changelog records."""
        out = correlate(self.correlator, self.log, records)
        entries = self.log.write(out.changes, records[-1][0] + 1, limit)
        return {f.run_name for f in out.decisions.fires}, entries

    def restore(
        self,
        changelog: list[bytes],
        generation: int = 0,
        snapshot: tuple[Snapshot, int] | None = None,
    ) -> list[bytes]:
        """Replay ``changelog`` (from a snapshot and the position it says to read on from,
        if given), then fence it as the stage does; return it with the fence."""
        start = 0
        if snapshot is not None:
            saved, start = snapshot
            self.log.load(decode_snapshot(encode_snapshot(saved)), self.correlator)
        for record in changelog[start:]:
            self.log.replay(decode_entry(record), self.correlator)
        fenced = [*changelog, self.log.fence(generation)]
        self.log.replay(decode_entry(fenced[-1]), self.correlator)
        self.log.restored(self.correlator)
        return fenced

    def state(self) -> dict[tuple[str, str], bytes]:
        """Everything each key holds: events, remembered ids and progress."""
        return {key: msgspec.json.encode(held) for key, held in self.correlator.state.items()}

    def held(self) -> dict[str, dict[str, list[str]]]:
        return {
            sid: {k: sorted(a.envelope.id for a in deps.values()) for k, deps in keys.items()}
            for sid in self.correlator.sensors
            if (keys := self.correlator.held(sid))
        }


def numbered(values: list[bytes]) -> list[tuple[int, bytes]]:
    return list(enumerate(values))


# what a replay applies


def test_a_replaced_owners_records_after_the_new_owners_fence_are_ignored() -> None:
    # Given an owner that held the order of day 1
    log = numbered([offers_record(arrival("orders", "o1", day="1"))])
    first = Owner()
    _, changelog = first.handle(log)
    # When a new owner takes the partition over (and fences it), while the first one,
    # paused past its session timeout, comes back and consumes the order with c1
    second = Owner()
    changelog = second.restore(changelog, generation=2)
    log += numbered([b""])  # (offsets line up with the log below)
    log.append((2, offers_record(arrival("customers", "c1", day="1"))))
    stale_fires, stale = first.handle(log[2:])
    assert stale_fires  # the zombie decided the run: the store's claims stop a second one
    changelog += stale
    # Then whoever replays the changelog next still holds the order: the zombie's record,
    # which says it was consumed, is not the current owner's
    third = Owner()
    third.restore(changelog, generation=3)
    assert third.held() == {"daily.trigger": {'"1"': ["o1"]}}
    assert third.log.ignored == 1


def test_a_record_whose_predecessor_never_landed_is_not_applied() -> None:
    # Given an owner whose batch N (holding o1) was lost, while batch N+1 (o1 consumed by
    # c1, which only records the id of c1) landed before the owner died
    owner = Owner()
    owner.handle([(0, offers_record(arrival("orders", "o1", day="1")))])  # its record is lost
    _, second = owner.handle([(1, offers_record(arrival("customers", "c1", day="1")))])
    # When a new owner replays what landed
    restored = Owner()
    restored.restore(second)
    # Then it applied nothing, and resumes the offers from the start, not after N+1,
    # where o1 would have been held again while already consumed
    assert (restored.held(), restored.log.offset, restored.log.ignored) == ({}, None, 1)


def test_a_record_sent_twice_is_applied_once_and_later_ones_still_count() -> None:
    owner = Owner()
    _, first = owner.handle([(0, offers_record(arrival("orders", "o1", day="1")))])
    _, second = owner.handle([(1, offers_record(arrival("orders", "o2", day="2")))])
    restored = Owner()
    restored.restore([*first, *first, *second])
    assert restored.held() == {"daily.trigger": {'"1"': ["o1"], '"2"': ["o2"]}}
    assert (restored.log.offset, restored.log.ignored) == (2, 1)


def test_a_batch_split_over_records_applies_only_once_its_last_record_is_read() -> None:
    owner = Owner()
    orders = [arrival("orders", f"o{n}", day=str(n)) for n in range(6)]
    _, records = owner.handle([(0, offers_record(*orders))], limit=400)
    assert len(records) > 2
    assert [decode_entry(r).offset for r in records] == [None] * (len(records) - 1) + [1]
    partial = Owner()
    partial.restore(records[:-1])
    assert (partial.held(), partial.log.offset) == ({}, None)
    whole = Owner()
    whole.restore(records)
    assert len(whole.held()["daily.trigger"]) == 6


def test_a_changelog_written_before_epochs_is_applied_in_log_order() -> None:
    owner = Owner()
    record = offers_record(arrival("orders", "o1", day="1"))
    out = correlate(owner.correlator, owner.log, [(0, record)])
    legacy = pack(out.changes, LIMIT)  # a bare array of changes, as before epochs
    restored = Owner()
    restored.restore(legacy)
    assert restored.held() == {"daily.trigger": {'"1"': ["o1"]}}


def test_state_of_an_old_definition_is_not_restored_after_a_redeploy() -> None:
    # Given an owner that held an order under the first definition of daily
    owner = Owner()
    _, changelog = owner.handle([(0, offers_record(arrival("orders", "o1", day="1")))])

    # When daily is redeployed with another window, and a new owner replays the changelog
    @trigger(events=["orders", "customers"], correlate_by="$.day", within="20m")
    def daily() -> None: ...

    redeployed = sensors(daily, deployed_at=T0)
    restored = Owner(redeployed)
    restored.restore(changelog)
    # Then the order, which the new definition never saw, is not held
    assert restored.held() == {}
    # And under the same definition it is
    same = Owner()
    same.restore(changelog)
    assert same.held() == {"daily.trigger": {'"1"': ["o1"]}}


def test_the_watermark_is_the_oldest_mark_and_unknown_until_every_source_marked() -> None:
    clock = Clock({"events:0", "events:1"})
    assert not clock.mark({"events:0": ms(10)}) and clock.watermark is None
    assert clock.mark({"events:1": ms(5)})
    assert clock.watermark == T0 + timedelta(seconds=5)
    assert not clock.mark({"events:1": ms(3)})  # marks never go back
    assert clock.mark({"events:1": ms(20), "other:0": ms(0)})  # unknown sources do not count
    assert clock.watermark == T0 + timedelta(seconds=10)


def test_a_fire_after_the_quiet_period_is_not_merged_into_the_one_waiting_for_it() -> None:
    # Given a debounced fire waiting for 30 s of quiet, whose mark has not passed yet
    owner = Owner()
    first, _ = owner.handle([(0, offers_record(arrival("landed", "l1", at=T0, day="1")))])
    # When the next event comes 40 s later, before any mark passed the quiet period
    late = arrival("landed", "l2", at=T0 + timedelta(seconds=40), day="1")
    second, _ = owner.handle([(1, offers_record(late))])
    # Then the first burst fires on its own, as it would have had a mark come first
    [sensor] = [s for s in DEPLOYED if s.id == "ingest.trigger"]
    l1 = arrival("landed", "l1", at=T0, day="1")
    assert (first, second) == (set(), {sensor.run_name([l1.key])})


def test_offers_and_marks_decide_the_same_across_any_batch_boundaries() -> None:
    records = numbered(
        [
            offers_record(arrival("landed", "l1", at=T0, day="1")),
            mark_record(29),
            offers_record(arrival("landed", "l2", at=T0 + timedelta(seconds=29), day="1")),
            mark_record(70),
        ]
    )
    whole, _ = Owner().handle(records)
    one_by_one = Owner()
    each = set().union(*(one_by_one.handle([r])[0] for r in records))
    assert whole == each
    assert len([name for name in whole if name.startswith("ingest-")]) == 1


# the property: a takeover decides exactly as an uninterrupted owner


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    """A partition's offers and marks, as the sensor stage writes them: an event never
    arrives before a mark written ahead of it (a mark promises that)."""
    clock, marked, records = 0.0, 0.0, []
    for n in range(draw(st.integers(5, 60))):
        clock += draw(st.sampled_from([0, 1, 5, 20, 45, 90]))
        if draw(st.integers(0, 3)) == 0:
            marked = max(marked, clock - draw(st.sampled_from([0, 2, 10])))
            records.append(mark_record(marked))
            continue
        name = draw(st.sampled_from(["orders", "customers", "failed", "landed", "heartbeat"]))
        at = T0 + timedelta(seconds=max(clock, marked + 0.001))
        event_at = at - timedelta(seconds=draw(st.sampled_from([0, 0, 3, 400])))
        day = draw(st.sampled_from(["1", "2"]))
        event = arrival(name, f"e{n}", at=event_at, day=day)
        records.append(offers_record(Arrival(event.envelope, at)))
    return records


def cut(draw: st.DrawFn, records: list[tuple[int, bytes]]) -> list[list[tuple[int, bytes]]]:
    """``records`` in batches of random sizes."""
    batches, rest = [], list(records)
    while rest:
        size = draw(st.integers(1, 6))
        batches.append(rest[:size])
        rest = rest[size:]
    return batches


def reference(stream: list[bytes]) -> tuple[list[tuple[int, bytes]], Owner, set[str]]:
    """``stream``'s records, numbered, and an uninterrupted owner of them with its fires."""
    records = numbered(stream)
    note(f"records: {[(n, decode_offers_record(v)) for n, v in records]}")
    uninterrupted = Owner()
    expected, _ = uninterrupted.handle(records)
    return records, uninterrupted, expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_any_takeover_fires_exactly_what_an_uninterrupted_owner_fires(
    stream: list[bytes], data: st.DataObject
) -> None:
    records, uninterrupted, expected = reference(stream)
    # Given an owner that handles the stream in random batches and dies at a random point,
    # having landed a random prefix of its changelog (and the fires of those batches; of
    # later ones, some or none), and maybe having lost one record of that prefix
    first, fired, changelog = Owner(), set(), []
    batches = cut(data.draw, records)
    died_after = data.draw(st.integers(0, len(batches)))
    for batch in batches[:died_after]:
        fires, entries = first.handle(batch, limit=data.draw(st.sampled_from([300, LIMIT])))
        fired |= fires
        changelog += entries
    landed = changelog[: data.draw(st.integers(0, len(changelog)))]
    if landed and data.draw(st.booleans()):
        del landed[data.draw(st.integers(0, len(landed) - 1))]
    # When a new owner restores that, fences it, and resumes the offers where it ends,
    # while the first one, paused rather than dead, comes back and goes on for a while
    second = Owner()
    changelog = second.restore(landed, generation=data.draw(st.integers(0, 2)))
    resume = second.log.offset or 0
    for batch in batches[died_after : died_after + data.draw(st.integers(0, 2))]:
        zombie_fires, zombie_entries = first.handle(batch)
        fired |= zombie_fires
        changelog += zombie_entries
    # And the new owner dies in turn, and a third takes over from its changelog
    rest = cut(data.draw, records[resume:])
    until = data.draw(st.integers(0, len(rest)))
    for batch in rest[:until]:
        fires, entries = second.handle(batch)
        fired |= fires
        changelog += entries
    third = Owner()
    third.restore(changelog, generation=3)
    for batch in cut(data.draw, records[third.log.offset or 0 :]):
        fires, _ = third.handle(batch)
        fired |= fires
    # Then, together, they fired exactly the runs of the uninterrupted owner, and the last
    # one holds what it holds
    assert fired == expected
    assert third.held() == uninterrupted.held()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_a_takeover_from_any_saved_snapshot_fires_exactly_what_an_uninterrupted_owner_fires(
    stream: list[bytes], data: st.DataObject
) -> None:
    records, uninterrupted, expected = reference(stream)

    def run(owner: Owner, batches: list[list[tuple[int, bytes]]], changelog: list[bytes]) -> None:
        """``owner`` handles ``batches``, and snapshots after some: each may be saved once its
        batch's records landed, saying to read on from their end, or from one record before
        it (another producer's records fell among them: the replay reads one again); after
        a batch that wrote none, as a handover does, from the end of the changelog."""
        nonlocal fired
        for batch in batches:
            fires, entries = owner.handle(batch, limit=data.draw(st.sampled_from([300, LIMIT])))
            fired |= fires
            changelog += entries
            if data.draw(st.booleans()):  # (after a batch that wrote nothing: a handover)
                end = len(changelog)
                read_on = data.draw(st.integers(end - 1, end)) if entries else end
                state = owner.correlator.snapshot({0})[0]
                taken.append((owner.log.snapshot(state), read_on, end))

    # Given an owner that snapshots now and then, and dies with a random prefix of its
    # changelog landed: its latest snapshot whose batch landed is the one saved
    first, fired, changelog = Owner(), set[str](), list[bytes]()
    taken: list[tuple[Snapshot, int, int]] = []
    batches = cut(data.draw, records)
    died_after = data.draw(st.integers(0, len(batches)))
    run(first, batches[:died_after], changelog)
    landed = changelog[: data.draw(st.integers(0, len(changelog)))]
    saved = [(snap, at) for snap, at, end in taken if end <= len(landed)][-1:]
    # When a new owner loads it, replays the changelog after it, and goes on, snapshotting
    # too, while the first one, a zombie, writes records after the fence
    second = Owner()
    changelog = second.restore(landed, data.draw(st.integers(0, 2)), *saved)
    resume = second.log.offset or 0
    for batch in batches[died_after : died_after + data.draw(st.integers(0, 2))]:
        zombie_fires, zombie_entries = first.handle(batch)
        fired |= zombie_fires
        changelog += zombie_entries
    taken = [(snap, at, at) for snap, at in saved]
    rest = cut(data.draw, records[resume:])
    run(second, rest[: data.draw(st.integers(0, len(rest)))], changelog)
    # And a third owner takes over from the latest snapshot saved, or from the beginning
    third = Owner()
    third.restore(changelog, 3, *[(snap, at) for snap, at, _ in taken[-1:]])
    # (holding what an uninterrupted owner held at the offset it resumes from)
    upto = Owner()
    if third.log.offset:
        upto.handle(records[: third.log.offset])
    upto.log.restored(upto.correlator)
    assert third.state() == upto.state()
    for batch in cut(data.draw, records[third.log.offset or 0 :]):
        fired |= third.handle(batch)[0]
    # Then, together, they fired exactly the runs of the uninterrupted owner, and the last
    # one holds what it holds
    assert fired == expected
    assert third.held() == uninterrupted.held()
