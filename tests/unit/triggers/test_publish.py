"""publish() refuses bad input before touching the network; safe_publish() never raises."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from triggers import ConfigurationError, PublishError, publish, safe_publish


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    monkeypatch.delenv("TRIPWIRE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("TRIPWIRE_RUN_CONTEXT", raising=False)


def test_a_bad_payload_fails_before_any_broker_is_needed() -> None:
    with pytest.raises(PublishError, match="must be a JSON object"):
        publish("data_updated", ["not", "an", "object"])  # type: ignore[arg-type]


async def test_the_async_form_validates_the_same_way() -> None:
    with pytest.raises(PublishError, match="invalid event name"):
        await publish.aio("bad name", {})


def test_publishing_with_no_broker_configured_says_how_to_configure_one() -> None:
    with pytest.raises(ConfigurationError, match="TRIPWIRE_KAFKA_BOOTSTRAP"):
        publish("data_updated", {"rows": 1})


def test_safe_publish_does_nothing_in_a_local_run(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="triggers.publish"):
        assert safe_publish("data_updated", {"rows": 1}) is None
    assert "local run" in caplog.text


async def test_safe_publish_logs_and_returns_none_on_bad_input(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    with caplog.at_level(logging.WARNING, logger="triggers.publish"):
        assert await safe_publish.aio("data_updated", [1]) is None  # type: ignore[arg-type]
    assert "must be a JSON object" in caplog.text
