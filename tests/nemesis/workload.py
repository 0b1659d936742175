"""The nemesis's workload: a seeded random stream of events for every trigger kind at once,
and its publisher.

The stream is built so that what must run does not depend on the order in which the
engine happens to read it (events of different names are keyed apart, so they
interleave differently on every run): each correlation key gets one way to fire, or
none. What varies is everything else a real stream does:

- event times jitter by up to 3 s, and one event in five is late by 1 to 4 minutes
  (still inside the 10-minute windows, so it must count);
- stale events, 30 minutes old, whose partner is fresh (they must never fire);
- one event in ten is published again later with the same id (it must count once);
- events of one key are published in any order, seconds apart.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from triggers import publish
from triggers.errors import PublishError

LATE = (60.0, 240.0)  # seconds: late, but inside the 10-minute window
STALE = 1800.0  # seconds: outside any window from a fresh partner
JITTER = 3.0


@dataclass(frozen=True)
class Publish:
    """One publish of the workload: at ``at`` seconds after its start, event ``name`` with
    ``payload``, whose time is ``time`` seconds after the start (before ``at``: late)."""

    at: float
    name: str
    id: str
    payload: dict[str, Any]
    time: float


@dataclass
class Workload:
    """A seeded stream of publishes (see the module)."""

    seed: int
    duration: float
    publishes: list[Publish] = field(default_factory=list)
    delays: dict[str, float] = field(default_factory=dict)
    """Per event id, the longest a publish of it took, retries included: a record that
    waited for a restarted broker lands later than its timestamp says."""

    @classmethod
    def generate(cls, seed: int, duration: float, keys_per_minute: float = 20.0) -> Workload:
        """``keys_per_minute`` correlation keys per trigger kind, their first events spread
        over ``duration`` seconds less 15 (a key's last events and duplicates may come up
        to 20 s after its first)."""
        rng = random.Random(seed)
        made = cls(seed, duration)
        keys = max(2, round(keys_per_minute * duration / 60))
        span = max(1.0, duration - 15)
        for kind in (made._pair, made._either, made._count, made._steps, made._bursts):
            for n in range(keys):
                kind(rng, f"{kind.__name__[1:]}-{seed}-{n}", rng.uniform(0, span))
        made.publishes.extend(made._duplicates(rng))
        made.publishes.sort(key=lambda p: p.at)
        return made

    # One correlation key of each trigger kind

    def _pair(self, rng: random.Random, key: str, at: float) -> None:
        """nm_pair: a and b (70%); one of them only (15%); a stale a and a fresh b (15%)."""
        shape = rng.random()
        if shape < 0.7:
            self._event(rng, key, "nm_a", at, {"a": rng.randrange(1000)})
            self._event(rng, key, "nm_b", at + rng.uniform(-4, 8), {"b": rng.randrange(1000)})
        elif shape < 0.85:
            self._event(rng, key, rng.choice(["nm_a", "nm_b"]), at, {"a": 1, "b": 1})
        else:
            self._event(rng, key, "nm_a", at, {"a": 1}, lag=STALE)
            self._event(rng, key, "nm_b", at + rng.uniform(0, 5), {"b": 1})

    def _either(self, rng: random.Random, key: str, at: float) -> None:
        """nm_either (``nm_x || (nm_y && nm_z)``): x alone, or y and z."""
        if rng.random() < 0.5:
            self._event(rng, key, "nm_x", at, {"x": rng.randrange(1000)})
        else:
            self._event(rng, key, "nm_y", at, {"y": rng.randrange(1000)})
            self._event(rng, key, "nm_z", at + rng.uniform(-3, 6), {"z": rng.randrange(1000)})

    def _count(self, rng: random.Random, key: str, at: float) -> None:
        """nm_count (threshold 3): three events of the key (80%), or two."""
        for _ in range(3 if rng.random() < 0.8 else 2):
            self._event(rng, key, "nm_th", at + rng.uniform(0, 10), {})

    def _steps(self, rng: random.Random, key: str, at: float) -> None:
        """nm_steps (sequence s1, s2, s3): event times in order (80%) or reversed, published
        in any order over 6 s."""
        base = at - rng.uniform(5, 8) - (rng.uniform(*LATE) if rng.random() < 0.2 else 0)
        ordered = rng.random() < 0.8
        for step in range(3):
            offset = 2.0 * (step if ordered else 2 - step)
            self._publish(
                key,
                f"nm_s{step + 1}",
                at + rng.uniform(0, 6),
                base + offset,
                {f"s{step + 1}": rng.randrange(1000)},
                rng,
            )

    def _bursts(self, rng: random.Random, key: str, at: float) -> None:
        """nm_settle (debounce 2 s): one or two bursts 10 s apart, of 1-4 events 0.3 s apart."""
        for burst in range(2 if rng.random() < 0.3 else 1):
            for n in range(rng.randint(1, 4)):
                self._event(rng, key, "nm_burst", at + 10 * burst + 0.3 * n, {"n": n + 10 * burst})

    # Events, their times and duplicates

    def _event(
        self,
        rng: random.Random,
        key: str,
        name: str,
        at: float,
        fields: dict[str, Any],
        lag: float | None = None,
    ) -> None:
        if lag is None:
            lag = rng.uniform(*LATE) if rng.random() < 0.2 else rng.uniform(0, JITTER)
        self._publish(key, name, max(0.0, at), max(0.0, at) - lag, fields, rng)

    def _publish(
        self,
        key: str,
        name: str,
        at: float,
        time: float,
        fields: dict[str, Any],
        rng: random.Random,
    ) -> None:
        number = len(self.publishes)
        event_id = f"nm-{self.seed}-{number}-{rng.getrandbits(32):08x}"
        self.publishes.append(Publish(max(0.0, at), name, event_id, {"k": key, **fields}, time))

    def _duplicates(self, rng: random.Random) -> list[Publish]:
        return [
            Publish(p.at + rng.uniform(0.5, 10), p.name, p.id, p.payload, p.time)
            for p in self.publishes
            if rng.random() < 0.1
        ]

    # Publishing

    async def run(self, start: datetime, log: list[str]) -> int:
        """Publish the stream in real time from ``start`` (the zero of ``at`` and ``time``),
        each publish retried with the same id until the broker takes it (a broker restart
        makes some fail; a retry of one that did land is one more duplicate). Return how
        many publishes were retried."""
        loop = asyncio.get_running_loop()
        zero = loop.time() - (datetime.now(start.tzinfo) - start).total_seconds()
        retried = 0
        for item in self.publishes:
            await asyncio.sleep(max(0.0, zero + item.at - loop.time()))
            when = start + timedelta(seconds=item.time)
            began = loop.time()
            while True:
                try:
                    await publish.aio(item.name, item.payload, id=item.id, time=when)
                    took = loop.time() - began
                    self.delays[item.id] = max(self.delays.get(item.id, 0.0), took)
                    break
                except PublishError as error:
                    retried += 1
                    log.append(f"publish {item.id} failed, retrying: {error}")
                    await asyncio.sleep(0.5)
        return retried
