"""Shared pytest configuration: fixtures live in tests/fixtures and are loaded as plugins."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.kafka",
    "tests.fixtures.db",
    "tests.fixtures.s3",
    "tests.fixtures.buses",
    "tests.fixtures.tls",
    "tests.fixtures.web",
    "tests.fixtures.tracing",
]
