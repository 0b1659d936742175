"""Fixtures of the fault-injection scenarios (tests/fixtures/chaos.py): the workers'
environment, and a broker that keeps its data in S3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from sensors.broker import EmbeddedBroker, free_port
from tests.fixtures.engine import engine_env  # noqa: F401 (a fixture)


@pytest.fixture
def chaos_env(engine_env: dict[str, str], tmp_path: Path) -> dict[str, str]:  # noqa: F811
    """The environment of a scenario's workers: its topics, and a SQLite run store."""
    return {
        **os.environ,
        "TRIPWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'runs.db'}",
    }


@pytest.fixture
def s3_broker(
    moto_endpoint: str,
    engine_env: dict[str, str],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[EmbeddedBroker]:
    """A Tansu broker keeping its data in a bucket of moto's S3, so it survives a restart;
    the test's publishes go to it."""
    bucket = f"tansu-{uuid.uuid4().hex[:10]}"
    aws = {
        "AWS_ENDPOINT": moto_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket=bucket)
    broker = EmbeddedBroker(
        port=free_port(), storage=f"s3://{bucket}/", log_path=tmp_path / "tansu.log", env=aws
    )
    broker.start(timeout=30)
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", broker.bootstrap)
    try:
        yield broker
    finally:
        broker.stop()
