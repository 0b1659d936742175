"""``type: gcp``: lifecycle events to a Pub/Sub topic, as CloudEvents JSON.

``topicName`` is a topic id (with ``gcp.projectId``) or ``projects/P/topics/T``.
The client honours ``PUBSUB_EMULATOR_HOST`` (the emulator in the tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sensors.egress.base import Outgoing
from triggers.cloud_events import CloudEventsConfig
from triggers.errors import ConfigurationError

__all__ = ["PubSubSink"]


class PubSubSink:
    def __init__(self, config: CloudEventsConfig) -> None:
        try:
            from google.cloud import pubsub_v1
        except ImportError:
            raise ConfigurationError(
                "cloud_events type gcp needs google-cloud-pubsub: pip install 'tripwire[gcp]'"
            ) from None
        self._client: Any = pubsub_v1.PublisherClient()
        topic = config.topic
        if not topic.startswith("projects/"):
            topic = self._client.topic_path(config.gcp.projectId, topic)
        self._topic = topic

    async def send(self, events: Sequence[Outgoing]) -> None:
        futures = [
            self._client.publish(
                self._topic,
                e.structured,
                **{"ce-id": e.id, "content-type": "application/cloudevents+json"},
            )
            for e in events
        ]
        for future in futures:  # concurrent.futures: wait off the event loop
            await asyncio.to_thread(future.result, timeout=60)

    async def close(self) -> None:
        self._client.stop()
