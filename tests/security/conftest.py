"""The security review's checks: what untrusted input (payloads, parameters, config files)
can reach, and where secrets can show up. The engine's fixtures come from tests/fixtures."""

from tests.fixtures.engine import api, engine, engine_env, store  # noqa: F401 (fixtures)
