"""Event sources: read other buses (NATS, MQTT, RabbitMQ, Redis Streams, Kafka, PostgreSQL
LISTEN) and publish what arrives as tripwire events. Declared with
:class:`triggers.sources.EventSource` or in YAML; see docs/sources.md."""

from sensors.sources.supervisor import SourceSupervisor

__all__ = ["SourceSupervisor"]
