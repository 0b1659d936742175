"""Declaring event sources: what is accepted, and what each refusal says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triggers.errors import ConfigurationError, DeclarationError
from triggers.sources import (
    EventSource,
    declared,
    load_sources_file,
    parse_expression,
    resolve_url,
    shown_url,
)


def test_the_issue_example_declares_a_nats_source(tmp_path: Path) -> None:
    file = tmp_path / "sources.yaml"
    file.write_text(
        "sources:\n"
        "  - name: orders_nats\n"
        "    url: nats://127.0.0.1:4222\n"
        "    subject: orders.>\n"
        "    event: orders_loaded\n"
    )
    (spec,) = load_sources_file(file)
    assert (spec.kind, spec.address, spec.event) == ("nats", "orders.>", "orders_loaded")
    assert not spec.acknowledged  # core NATS: no redelivery


@pytest.mark.parametrize(
    ("url", "address", "kind"),
    [
        ("nats://h:4222", {"subject": "a.>", "stream": "A"}, "nats"),
        ("mqtt://h:1883", {"topic": "a/#"}, "mqtt"),
        ("amqp://guest:guest@h:5672/", {"queue": "q"}, "rabbitmq"),
        ("redis://h:6379/0", {"stream": "s"}, "redis"),
        ("kafka://h:9092,g:9092", {"topic": "t"}, "kafka"),
        ("postgresql://u@h/db", {"channel": "c"}, "postgres"),
    ],
)
def test_the_url_scheme_names_the_bus(url: str, address: dict[str, str], kind: str) -> None:
    spec = EventSource(name="s", url=url, event="e", **address)  # type: ignore[arg-type]
    assert spec.kind == kind
    assert spec.acknowledged == (kind != "postgres")


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"url": "nats://h", "event": "e"}, "a nats source needs 'subject'"),
        ({"url": "foo://h", "subject": "s", "event": "e"}, "unknown scheme foo://"),
        ({"url": "redis://h", "stream": "s", "event": "e", "qos": 1}, "qos does not apply"),
        ({"url": "nats://h", "subject": "s", "event": "e", "durable": "d"}, "need a JetStream"),
        ({"url": "redis://h", "stream": "s", "event": "bad name"}, "invalid event name"),
        ({"url": "redis://h", "stream": "s", "event": "{nope}"}, "unknown placeholder {nope}"),
        ({"url": "redis://h", "stream": "s", "event": "$.[["}, "invalid JSONPath"),
        ({"url": "redis://h", "stream": "s", "event": "e", "filters": ["x > 1"]}, "is not"),
        ({"url": "redis://h", "stream": "s", "event": "e", "colour": "red"}, "colour"),
        ({"url": "mqtt://h", "topic": "t", "event": "e", "qos": 3}, "qos"),
    ],
)
def test_a_wrong_declaration_says_where_and_what_is_wrong(
    tmp_path: Path, fields: dict[str, object], says: str
) -> None:
    # Given a YAML file whose second source is wrong (JSON is YAML)
    file = tmp_path / "orders.yaml"
    good = {"name": "ok", "url": "nats://h", "subject": "s", "event": "e"}
    bad = {"name": "s", **fields}
    file.write_text(f"sources:\n  - {json.dumps(good)}\n  - {json.dumps(bad)}\n")
    # Then its error names the file, the line of the list item and the source
    with pytest.raises(DeclarationError) as caught:
        load_sources_file(file)
    assert str(caught.value).startswith(f"{file}:3: source 's': ")
    assert says in str(caught.value)
    assert (caught.value.path, caught.value.line) == (str(file), 3)


def test_a_source_name_is_an_identifier() -> None:
    with pytest.raises(DeclarationError, match="invalid source name 'Orders NATS'"):
        declared({"name": "Orders NATS", "url": "nats://h", "subject": "s", "event": "e"})


def test_a_file_without_a_sources_list_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "sources.yaml"
    file.write_text("- name: a\n")
    with pytest.raises(DeclarationError, match="top-level 'sources:' list"):
        load_sources_file(file)
    file.write_text("sources: [\n")
    with pytest.raises(
        DeclarationError, match=r"sources\.yaml:2: sources file: it is not valid YAML"
    ):
        load_sources_file(file)


def test_expressions_are_literals_jsonpaths_or_templates() -> None:
    assert parse_expression("orders_loaded", where="w").kind == "literal"
    assert parse_expression("$.type", where="w").kind == "jsonpath"
    template = parse_expression("orders.{$.region}.{subject}-{headers.kind}", where="w")
    assert template.kind == "template"
    assert template.parts == (
        (False, "orders."),
        (True, "$.region"),
        (False, "."),
        (True, "subject"),
        (False, "-"),
        (True, "headers.kind"),
    )
    with pytest.raises(DeclarationError, match="unbalanced braces"):
        parse_expression("orders_{$.region", where="w")


def test_a_password_never_shows_and_variables_resolve_where_the_source_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert shown_url("amqp://app:s3cret@h:5672/") == "amqp://app:***@h:5672/"
    assert shown_url("amqp://app:${RABBIT_PASSWORD}@h/") == "amqp://app:${RABBIT_PASSWORD}@h/"
    monkeypatch.setenv("RABBIT_PASSWORD", "s3cret")
    assert resolve_url("amqp://app:${RABBIT_PASSWORD}@h/") == "amqp://app:s3cret@h/"
    monkeypatch.delenv("RABBIT_PASSWORD")
    with pytest.raises(ConfigurationError, match=r"names \$\{RABBIT_PASSWORD\}, which is not set"):
        resolve_url("amqp://app:${RABBIT_PASSWORD}@h/")


def test_a_variable_may_have_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYMENTS_KAFKA", raising=False)
    assert resolve_url("kafka://${PAYMENTS_KAFKA:-127.0.0.1:9092}") == "kafka://127.0.0.1:9092"
    monkeypatch.setenv("PAYMENTS_KAFKA", "k1:9092,k2:9092")
    assert resolve_url("kafka://${PAYMENTS_KAFKA:-127.0.0.1:9092}") == "kafka://k1:9092,k2:9092"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://${PGUSER:-postgres}@h:5432/db",
            "postgresql://${PGUSER:-postgres}@h:5432/db",
        ),
        ("amqp://${USER}:${PW}@h/", "amqp://${USER}:${PW}@h/"),
        ("amqp://${USER}:s3cret@h/", "amqp://${USER}:***@h/"),
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("nats://h:4222", "nats://h:4222"),
    ],
)
def test_shown_urls_keep_variable_names_and_hide_passwords(url: str, shown: str) -> None:
    assert shown_url(url) == shown


def test_a_wrong_python_declaration_raises_declaration_error_naming_its_line_and_field() -> None:
    here = f"{Path(__file__).relative_to(Path.cwd())}"
    with pytest.raises(DeclarationError) as caught:
        EventSource(name="orders", url="redis://h", event="e")  # no stream
    line = caught.traceback[0].lineno + 1  # pytest counts lines from 0
    assert str(caught.value) == (
        f"{here}:{line}: source 'orders': a redis source needs 'stream' (where to read)"
    )
    with pytest.raises(DeclarationError, match="source 'orders': prefetch: Input should be"):
        EventSource(name="orders", url="amqp://h", queue="q", event="e", prefetch=0)


def test_a_kafka_source_on_another_cluster_declares_its_security_and_logs_in_from_the_url() -> None:
    # Given a source on a partner's cluster: SCRAM over TLS, its credentials in the URL
    source = EventSource(
        name="partner_orders",
        url="kafka://${PARTNER_USER}:${PARTNER_PASSWORD}@broker.partner.example:9094",
        topic="orders",
        event="partner_order",
        security={
            "protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "ssl_ca_file": "/etc/partner/ca.pem",
        },
    )
    # When the URL is resolved where it runs, Then the login comes from it
    security = source.kafka_security("kafka://svc%40partner:p%3Ass@broker.partner.example:9094")
    assert security.protocol == "SASL_SSL" and security.ssl_ca_file == Path("/etc/partner/ca.pem")
    assert security.sasl_username is not None and security.sasl_password is not None
    assert security.sasl_username.get_secret_value() == "svc@partner"
    assert security.sasl_password.get_secret_value() == "p:ss"


@pytest.mark.parametrize(
    ("url", "security", "says"),
    [
        (
            "kafka://",
            {"protocol": "SSL"},
            "a kafka:// source without brokers reads tripwire's own cluster, as tripwire "
            "connects to it (TRIPWIRE_KAFKA_*)",
        ),
        (
            "kafka://b:9094",
            {"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_password": "x"},
            "security.sasl_password: put the user name and password in the URL",
        ),
        (
            "kafka://b:9094",
            {"protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
            "security.sasl_mechanism=PLAIN needs the user name in the URL and the password in "
            "the URL",
        ),
        (
            "kafka://${U}:${P}@b:9094",
            None,
            "the user name in the URL, the password in the URL are set, but "
            "security.protocol=PLAINTEXT sends no SASL login",
        ),
        ("kafka://b:9094", {"protocol": "TLS"}, "security.protocol: Input should be"),
    ],
)
def test_a_kafka_source_security_that_cannot_work_is_refused_where_declared(
    url: str, security: dict[str, str] | None, says: str
) -> None:
    with pytest.raises(DeclarationError) as refused:
        EventSource(name="partner", url=url, topic="t", event="e", security=security)
    assert says in str(refused.value)


def test_security_is_for_kafka_sources_only() -> None:
    with pytest.raises(DeclarationError, match="security does not apply to a nats source"):
        EventSource(name="n", url="nats://h:4222", subject="s", event="e", security={})
