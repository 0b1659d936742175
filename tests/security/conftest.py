"""The security review's checks: what untrusted input (payloads, parameters, config files)
can reach, and where secrets can show up. Integration fixtures come from tests/integration."""

from tests.integration.conftest import api, engine, engine_env, store  # noqa: F401 (fixtures)
