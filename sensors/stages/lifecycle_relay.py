"""Run lifecycle events: every phase change of a run and of its attempts, as a CloudEvent.

A phase change is written to the run's history in the same transaction that makes
it (:meth:`~sensors.runs.store.RunStore.transition`), so the history is an outbox:
:class:`LifecycleRelay` publishes what has not gone out yet to
``tripwire.run-events``, in order, and only then marks it published. A crash in
between publishes a change again, under the same event id, so consumers (a
``trigger_on_finish`` sensor counts an event id once) see it once.

A run of a Metaflow flow that succeeds also publishes, to the events topic, the event
Metaflow's Argo integration would (``metaflow.[PROJECT.BRANCH.]FLOW.end``, see
:func:`sensors.interop.metaflow.end_event`), before its change is marked published: so
``@trigger_on_finish`` chains on tripwire and on Argo alike.

Event shape, after Flyte's cloud events: type ``com.tripwire.resource.workflow``
with subject ``WorkflowExecutionEvent`` for a run, ``com.tripwire.resource.task``
with subject ``TaskExecutionEvent`` for an attempt; the key is the run name, so
the events of one run stay in order on one partition. The events of a run in a trace
(``traceparent``, see docs/tracing.md) carry its context (an attempt's change, its
attempt span's), so that a ``trigger_on_finish`` sensor downstream continues the trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from sensors.interop.metaflow import end_event
from sensors.runs import history as runs_history
from sensors.runs.models import PhaseChange
from sensors.runs.outages import log_failure
from sensors.runs.phases import WorkflowPhase
from sensors.runs.store import RunStore
from triggers.envelope import KafkaRecord, encode, make_envelope, trace_attributes
from triggers.errors import PublishError
from triggers.settings import Settings
from triggers.spec import RUN_EVENT_TYPE

__all__ = [
    "TASK_EVENT",
    "WORKFLOW_EVENT",
    "LifecycleRelay",
    "lifecycle_data",
    "lifecycle_record",
]

log = logging.getLogger(__name__)

WORKFLOW_EVENT = RUN_EVENT_TYPE
TASK_EVENT = "com.tripwire.resource.task"
_RELAY_EVERY = 0.2  # seconds between looks at the outbox while it is empty
_BATCH = 500
_RETRY_FIRST, _RETRY_LAST = 0.5, 10.0  # seconds between tries while publishing fails


def lifecycle_data(change: PhaseChange, settings: Settings) -> dict[str, Any]:
    """The event's data: which run, which phase, when, why, and where its outputs are."""
    output = None
    if change.phase == WorkflowPhase.SUCCEEDED:
        output = (settings.home / "runs" / change.name).resolve().as_uri()
    return {
        "execution_id": {"project": change.project, "domain": change.domain, "name": change.name},
        "flow": change.flow,
        "attempt": change.attempt,
        "phase": change.phase,
        "occurred_at": change.at.isoformat(),
        "error": change.error.model_dump(mode="json") if change.error else None,
        "output_uri": output,
    }


def lifecycle_record(change: PhaseChange, settings: Settings) -> KafkaRecord:
    """One phase change as a binary-mode CloudEvent for Kafka, in its run's trace (the
    distributed-tracing extension: ``ce_traceparent``, ``ce_tracestate``) when it has one."""
    run_level = change.attempt is None
    attributes: dict[str, Any] = {
        "type": WORKFLOW_EVENT if run_level else TASK_EVENT,
        "source": f"tripwire://runs/{change.project}/{change.domain}",
        "id": f"{change.project}.{change.domain}.phase-{change.id}",
        "subject": "WorkflowExecutionEvent" if run_level else "TaskExecutionEvent",
        "time": change.at,
        "datacontenttype": "application/json",
    }
    if change.traceparent is not None:
        attributes |= trace_attributes(change.traceparent, change.tracestate)
    event = CloudEvent(attributes=attributes, data=lifecycle_data(change, settings))
    message = ce_kafka.to_binary_event(event, key_mapper=lambda _: change.name)
    key = message.key.encode() if isinstance(message.key, str) else (message.key or b"")
    return KafkaRecord(key=key, value=message.value, headers=list(message.headers.items()))


class LifecycleRelay:
    """Publishes the run history's unpublished changes, oldest first, until stopped."""

    def __init__(self, settings: Settings, store: RunStore, producer: AIOKafkaProducer) -> None:
        self._settings = settings
        self._store = store
        self._producer = producer
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        wait = _RELAY_EVERY
        while not stop.is_set():
            try:
                sent = await self.relay_once()
                wait = _RELAY_EVERY
            except asyncio.CancelledError:
                raise
            except Exception:
                # An outage (of the store or the broker) is said once per try, with backoff.
                wait = min(max(wait * 2, _RETRY_FIRST), _RETRY_LAST)
                log_failure(log, "publishing run lifecycle events failed; retrying in %.1fs", wait)
                sent = 0
            # A pass sends a run's changes one at a time while earlier ones of that run go
            # out (relay_changes), so it looks again at once whenever it sent something.
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)

    async def relay_once(self) -> int:
        """Publish one batch of unpublished changes; return how many went out."""
        sent = await runs_history.relay_changes(self._store, self._publish, limit=_BATCH)
        self.published += sent
        return sent

    async def _publish(self, changes: list[PhaseChange]) -> None:
        """Send ``changes`` (and the end events of the Metaflow runs they end) and wait
        until the broker has them all."""
        topic = self._settings.topic_run_events
        acks = [await self._send(record) for record in await self._end_events(changes)]
        for change in changes:
            record = lifecycle_record(change, self._settings)
            acks.append(
                await self._producer.send(
                    topic, record.value, key=record.key, headers=record.headers
                )
            )
        # The changes stay claimed (locked, on PostgreSQL) until the broker answers: a
        # broker that never does must not hold them, and the other relays, for ever.
        await asyncio.wait_for(asyncio.gather(*acks), self._settings.publish_timeout * 3)

    async def _end_events(self, changes: list[PhaseChange]) -> list[KafkaRecord]:
        """The end events of the Metaflow runs among the runs that ``changes`` end well."""
        ended = {
            (c.project, c.domain, c.name): c
            for c in changes
            if c.attempt is None and c.phase == WorkflowPhase.SUCCEEDED
        }
        records = []
        for run in await runs_history.runs_of(self._store, list(ended.values())):
            at = ended[run.key].at
            event = end_event(run, at)
            if event is None:
                continue
            name, event_id, payload = event
            try:
                envelope, _ = make_envelope(
                    name, payload, id=event_id, source="tripwire://metaflow", time=at
                )
            except PublishError as exc:
                # One run's end event must never hold back the lifecycle of every run.
                log.error("run %s: its Metaflow end event cannot be published: %s", run.name, exc)
                continue
            records.append(encode(envelope))
        return records

    async def _send(self, record: KafkaRecord) -> asyncio.Future[Any]:
        return await self._producer.send(
            self._settings.topic_events, record.value, key=record.key, headers=record.headers
        )
