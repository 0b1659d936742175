"""The engine's Kafka stages: each reads a topic in batches and writes topics and the store."""
