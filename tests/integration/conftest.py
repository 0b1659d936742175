"""Fixtures for tests that run the whole engine against the real broker and store."""

from tests.fixtures.engine import (  # noqa: F401  (fixtures, found by name)
    api,
    engine,
    engine_env,
    store,
)
