"""Kafka over TLS and with SASL logins, against the embedded broker.

What this Tansu build can and cannot do is in tests/fixtures/tls.py: TLS comes from a TLS
terminator in front of it, and its ``--authentication`` refuses every login (it keeps no
users), so the logins here are the refused ones: a wrong password, a mechanism it does
not offer, a token it does not take. Each refusal must come at once, as an error that
names the broker, the cause and the setting to change.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from sensors.egress.base import Outgoing
from sensors.egress.kafka import KafkaSink
from sensors.engine import Engine
from sensors.registry import discover_flows
from sensors.runs.phases import WorkflowPhase
from sensors.sources.kafka import KafkaUpstream
from sensors.stages.kafka import ensure_topics, new_consumer
from tests.fixtures.engine import FLOWS, finished_run
from tests.fixtures.tls import KEY_PASSWORD, Pki, kafka_behind_tls
from tests.fixtures.waits import eventually
from triggers import publish
from triggers.cloud_events import CloudEventsConfig
from triggers.errors import KafkaSecurityError, PublishError
from triggers.kafka_client import connect
from triggers.settings import Settings
from triggers.sources import EventSource

pytestmark = pytest.mark.integration

TOKENS: list[str] = []
"""The tokens :func:`issue_token` handed out, for the OAUTHBEARER test."""


def issue_token() -> str:
    """An OAUTHBEARER token provider, as TRIPWIRE_KAFKA_SASL_OAUTH_TOKEN_PROVIDER names it."""
    TOKENS.append(f"token-{len(TOKENS)}")
    return TOKENS[-1]


def secure(monkeypatch: pytest.MonkeyPatch, bootstrap: str, **security: Any) -> Settings:
    """Point this test's TRIPWIRE_* environment at ``bootstrap`` with ``security``
    (TRIPWIRE_KAFKA_<NAME>), as a deployment would; return the settings it makes."""
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", bootstrap)
    for name, value in security.items():
        monkeypatch.setenv(f"TRIPWIRE_KAFKA_{name.upper()}", str(value))
    return Settings()


async def read_one(settings: Settings, topic: str) -> Any:
    """The first record of ``topic``, read by a consumer that connects as ``settings`` say."""
    consumer = new_consumer(settings, topic, group_id=None)
    try:
        await connect(consumer, settings.kafka_connection())

        async def probe() -> Any:
            batch = await consumer.getmany(timeout_ms=200)
            return next((r for records in batch.values() for r in records), None)

        return await eventually(probe, f"a record on {topic}", timeout=30)
    finally:
        await consumer.stop()


async def test_an_event_published_over_tls_reaches_a_consumer_that_checks_the_broker(
    tls_kafka: str, pki: Pki, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broker behind TLS, and settings that trust the CA that signed its certificate
    monkeypatch.setenv("TRIPWIRE_TOPIC_EVENTS", unique_name)
    settings = secure(monkeypatch, tls_kafka, security_protocol="SSL", ssl_ca_file=pki.ca)
    # When an event is published
    event_id = await publish.aio("orders_loaded", {"orders": 3})
    # Then a consumer connecting the same way reads it
    record = await read_one(settings, unique_name)
    assert dict(record.headers)["ce_id"] == event_id.encode()


async def test_a_flow_runs_end_to_end_on_a_broker_that_wants_client_certificates(
    engine_env: dict[str, str], mtls_kafka: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broker that wants a client certificate (as Aiven's), and a worker with one
    # whose key is encrypted
    settings = secure(
        monkeypatch,
        mtls_kafka,
        security_protocol="SSL",
        ssl_ca_file=pki.ca,
        ssl_cert_file=pki.client_cert,
        ssl_key_file=pki.client_key,
        ssl_key_password=KEY_PASSWORD,
    )
    async with Engine(settings, discover_flows([FLOWS])) as engine:
        await engine.wait_ready(timeout=30)
        assert engine.store is not None
        # When an event is published
        event_id = await publish.aio("data_updated", {"rows": 5})
        # Then its flow runs: every stage read and wrote over mutual TLS
        run = await finished_run(engine.store, event_id)
    assert run.phase == WorkflowPhase.SUCCEEDED, run.error


async def test_a_broker_certificate_from_an_unknown_ca_stops_the_worker_at_start(
    engine_env: dict[str, str], tls_kafka: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given settings that trust another CA than the one that signed the broker's certificate
    settings = secure(monkeypatch, tls_kafka, security_protocol="SSL", ssl_ca_file=pki.other_ca)
    # When a worker starts, Then it stops at once, naming the broker, the cause and the setting
    with pytest.raises(KafkaSecurityError) as refused:
        await asyncio.wait_for(Engine(settings).start(), 20)
    assert str(refused.value).startswith(f"cannot connect to the Kafka broker at {tls_kafka}:")
    assert "certificate is not trusted" in str(refused.value)
    assert "TRIPWIRE_KAFKA_SSL_CA_FILE" in str(refused.value)


async def test_a_certificate_for_another_host_is_refused_unless_hostname_checks_are_off(
    pki: Pki, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broker whose certificate names kafka.invalid, reached as 127.0.0.1
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.elsewhere_cert, pki.elsewhere_key)
    monkeypatch.setenv("TRIPWIRE_TOPIC_EVENTS", unique_name)
    with kafka_behind_tls(context, tmp_path) as address:
        # When publishing with hostname checks on (the default), Then it is refused
        secure(monkeypatch, address, security_protocol="SSL", ssl_ca_file=pki.ca)
        with pytest.raises(PublishError, match=r"not for 127\.0\.0\.1.*SSL_CHECK_HOSTNAME=false"):
            await publish.aio("orders_loaded", {})
        # And with them off, the same certificate is accepted
        settings = secure(monkeypatch, address, ssl_check_hostname="false")
        event_id = await publish.aio("orders_loaded", {})
        record = await read_one(settings, unique_name)
        assert dict(record.headers)["ce_id"] == event_id.encode()


async def test_without_a_client_certificate_a_broker_that_wants_one_says_which_setting(
    mtls_kafka: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = secure(monkeypatch, mtls_kafka, security_protocol="SSL", ssl_ca_file=pki.ca)
    with pytest.raises(KafkaSecurityError, match=r"client certificate.*SSL_CERT_FILE"):
        await asyncio.wait_for(ensure_topics(settings, ["anything"]), 20)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_wrong_password_is_refused_at_once_with_what_the_broker_said(
    sasl_kafka: str, mechanism: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIPWIRE_PUBLISH_TIMEOUT", "15")
    secure(
        monkeypatch,
        sasl_kafka,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="alice",
        sasl_password="not-her-password",
    )
    with pytest.raises(PublishError) as refused:
        await publish.aio("orders_loaded", {})
    message = str(refused.value)
    assert f"cannot connect to the Kafka broker at {sasl_kafka}" in message
    assert f"rejected the {mechanism} login" in message and "unknown-user" in message
    assert "TRIPWIRE_KAFKA_SASL_USERNAME and TRIPWIRE_KAFKA_SASL_PASSWORD" in message
    assert "not-her-password" not in message


async def test_a_wrong_password_over_tls_is_refused_the_same_way(
    sasl_tls_kafka: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = secure(
        monkeypatch,
        sasl_tls_kafka,
        security_protocol="SASL_SSL",
        ssl_ca_file=pki.ca,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password="not-her-password",
    )
    with pytest.raises(KafkaSecurityError, match="rejected the SCRAM-SHA-512 login"):
        await asyncio.wait_for(ensure_topics(settings, ["anything"]), 20)


async def test_a_mechanism_the_broker_does_not_offer_is_named(
    sasl_kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = secure(
        monkeypatch,
        sasl_kafka,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password="secret",
    )
    with pytest.raises(
        KafkaSecurityError, match=r"refused SASL mechanism PLAIN: set TRIPWIRE_KAFKA_SASL_MECHANISM"
    ):
        await asyncio.wait_for(ensure_topics(settings, ["anything"]), 20)


async def test_an_oauthbearer_token_comes_from_the_named_function_and_its_refusal_is_named(
    sasl_kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a token provider named as module:function
    TOKENS.clear()
    settings = secure(
        monkeypatch,
        sasl_kafka,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=f"{__name__}:issue_token",
    )
    # When a client connects, Then the broker got a token of it, and its refusal is named
    with pytest.raises(KafkaSecurityError, match="rejected the OAUTHBEARER token"):
        await asyncio.wait_for(ensure_topics(settings, ["anything"]), 20)
    assert TOKENS


async def test_a_client_without_a_login_is_told_the_broker_wants_one(
    sasl_kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = secure(monkeypatch, sasl_kafka)
    with pytest.raises(KafkaSecurityError, match=r"wants a login.*SECURITY_PROTOCOL=SASL_SSL"):
        await asyncio.wait_for(ensure_topics(settings, ["anything"]), 20)


async def test_a_kafka_source_reads_another_cluster_over_tls_with_its_own_security(
    tls_kafka: str, pki: Pki, unique_name: str, tmp_path: Path
) -> None:
    # Given a topic on another cluster behind TLS, and a source declaring that cluster's CA
    partner = Settings(
        home=tmp_path,
        kafka_bootstrap=tls_kafka,
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=pki.ca,
    )
    producer = AIOKafkaProducer(**partner.kafka_connection())
    await connect(producer, partner.kafka_connection())
    try:
        await producer.send_and_wait(unique_name, b'{"order": 7}')
    finally:
        await producer.stop()
    spec = EventSource(
        name="partner_orders",
        url=f"kafka://{tls_kafka}",
        topic=unique_name,
        event="partner_order",
        start="all",
        security={"protocol": "SSL", "ssl_ca_file": str(pki.ca)},
    )
    # When the source connects, from a worker whose own cluster is plaintext
    worker = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1")
    upstream = KafkaUpstream(spec, spec.url, "test", f"{unique_name}-group", worker)
    await asyncio.wait_for(upstream.connect(), 20)
    try:
        # Then it reads the message
        messages = await eventually(lambda: upstream.receive(10, 0.2), "the partner's message")
        assert messages[0].body == b'{"order": 7}'
    finally:
        await upstream.close()


async def test_a_kafka_source_without_the_partner_ca_names_its_own_setting(
    tls_kafka: str, tmp_path: Path, unique_name: str
) -> None:
    spec = EventSource(
        name="partner_orders",
        url=f"kafka://{tls_kafka}",
        topic=unique_name,
        event="partner_order",
        security={"protocol": "SSL"},
    )
    worker = Settings(home=tmp_path, kafka_bootstrap="127.0.0.1:1")
    upstream = KafkaUpstream(spec, spec.url, "test", f"{unique_name}-group", worker)
    with pytest.raises(KafkaSecurityError, match=r"not trusted.*set security\.ssl_ca_file"):
        await asyncio.wait_for(upstream.connect(), 20)


async def test_lifecycle_events_leave_through_egress_over_tls(
    tls_kafka: str, pki: Pki, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given egress to a topic of tripwire's cluster, which is behind TLS
    settings = secure(monkeypatch, tls_kafka, security_protocol="SSL", ssl_ca_file=pki.ca)
    config = CloudEventsConfig.model_validate(
        {"enable": True, "type": "kafka", "eventsPublisher": {"topicName": unique_name}}
    )
    sink = KafkaSink(config, settings)
    # When the sink sends an event
    event = Outgoing(key=b"run-1", value=b"{}", headers=[], structured=b"{}", id="e-1")
    try:
        await asyncio.wait_for(sink.send([event]), 20)
    finally:
        await sink.close()
    # Then it is on the topic
    record = await read_one(settings, unique_name)
    assert record.key == b"run-1"
