"""The egress stage: ``tripwire.run-events`` in, the configured sink out, at least once.

It is a consumer group of its own, so a sink that is down holds up nothing but
itself: sensing and launching go on, and the events wait in Kafka (the
run-events topic is the buffer). A batch is committed only once the sink took
all of it; until then it is sent again with exponential backoff, so delivery
catches up when the sink is back, and an event may arrive twice (same id).
"""

from __future__ import annotations

import asyncio
import logging

from sensors.egress.base import Sink, kind_of, outgoing
from sensors.stages.kafka import Batch
from triggers.cloud_events import CloudEventsConfig

__all__ = ["EgressStage"]

log = logging.getLogger(__name__)

_FIRST_WAIT, _MAX_WAIT = 1.0, 60.0  # seconds between tries while the sink is down


class EgressStage:
    """Forwards the lifecycle events of the configured kinds to a sink."""

    def __init__(self, config: CloudEventsConfig, sink: Sink) -> None:
        self._config = config
        self.sink = sink
        self.sent = 0
        self.failures = 0

    async def handle(self, batch: Batch) -> None:
        kinds, source = self._config.kinds, self._config.source
        events = [
            outgoing(record, source)
            for records in batch.values()
            for record in records
            if kind_of(record) in kinds
        ]
        if not events:
            return
        wait = _FIRST_WAIT
        while True:
            try:
                await self.sink.send(events)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                log.warning(
                    "cloud events: %s %s failed (%s); %d event(s) wait in Kafka, next try in %.0fs",
                    self._config.type,
                    self._config.topic,
                    exc,
                    len(events),
                    wait,
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, _MAX_WAIT)
        self.sent += len(events)
