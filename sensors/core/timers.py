"""Deadlines per key, for the correlator's expiry and its clock-driven fires."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime

from sensors.core.types import StateKey

__all__ = ["Timers"]


class Timers:
    """One deadline per key, earliest first: a heap whose superseded entries are skipped."""

    def __init__(self) -> None:
        self.due: dict[StateKey, datetime] = {}
        self._heap: list[tuple[datetime, StateKey]] = []

    def set(self, key: StateKey, when: datetime) -> None:
        self.due[key] = when
        heapq.heappush(self._heap, (when, key))

    def earlier(self, key: StateKey, when: datetime) -> None:
        """Move the key's deadline to ``when`` if that is earlier (or it has none)."""
        current = self.due.get(key)
        if current is None or when < current:
            self.set(key, when)

    def discard(self, key: StateKey) -> None:
        self.due.pop(key, None)

    def pop(self, now: datetime, *, strict: bool = False) -> list[StateKey]:
        """Remove and return the keys whose deadline is before ``now`` (or at it)."""
        heap, due, keys = self._heap, self.due, []
        while heap and (heap[0][0] < now or (not strict and heap[0][0] == now)):
            when, key = heapq.heappop(heap)
            if due.get(key) == when:
                del due[key]
                keys.append(key)
        return keys

    def keep(self, keep: Callable[[StateKey], bool]) -> None:
        self.due = {k: d for k, d in self.due.items() if keep(k)}
        self._heap = [entry for entry in self._heap if self.due.get(entry[1]) == entry[0]]
        heapq.heapify(self._heap)
