"""Egress: run lifecycle events forwarded to external pub/sub, after Flyte's cloud events.

Each sink implements :class:`Sink` and is chosen by the ``cloud_events.type``
setting (``kafka``, ``aws`` for SNS or SQS, ``gcp`` for Pub/Sub); optional
clients are imported lazily, and a missing one names its pip extra. The events
are the CloudEvents already on ``tripwire.run-events``
(:mod:`sensors.stages.lifecycle_relay`): Kafka gets them as they are (binary mode);
SNS, SQS and Pub/Sub get CloudEvents JSON (structured mode), with ``data`` as
JSON (not protobuf). :mod:`sensors.egress.stage` reads the topic and delivers.
"""

from __future__ import annotations

from sensors.egress.base import Sink
from triggers.cloud_events import CloudEventsConfig
from triggers.errors import ConfigurationError
from triggers.settings import Settings

__all__ = ["sink_for"]


def sink_for(config: CloudEventsConfig, settings: Settings) -> Sink:
    """The sink of a ``cloud_events`` config.

    Raises:
        ConfigurationError: the sink's client library is not installed.
    """
    if config.type == "kafka":
        from sensors.egress.kafka import KafkaSink

        return KafkaSink(config, settings)
    if config.type == "aws":
        from sensors.egress.aws import aws_sink

        return aws_sink(config)
    if config.type == "gcp":
        from sensors.egress.gcp import PubSubSink

        return PubSubSink(config)
    raise ConfigurationError(f"cloud_events.type={config.type!r} is not kafka, aws or gcp")
