"""Kafka security as settings: combinations checked where they are set, secrets kept out of
sight, and the one place that turns them into aiokafka's arguments."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.tls import KEY_PASSWORD, Pki
from triggers.errors import ConfigurationError
from triggers.kafka_client import TokenProvider, client_options
from triggers.kafka_security import KafkaSecurity
from triggers.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRIPWIRE_HOME", str(tmp_path))
    monkeypatch.setenv("TRIPWIRE_KAFKA_BOOTSTRAP", "kafka-1:9093,kafka-2:9093")


def settings(monkeypatch: pytest.MonkeyPatch, **security: Any) -> Settings:
    for name, value in security.items():
        monkeypatch.setenv(f"TRIPWIRE_KAFKA_{name.upper()}", str(value))
    return Settings()


async def token_of_a_coroutine() -> str:
    return "from-a-coroutine"


def token_of_a_function() -> str:
    return "from-a-function"


def no_token() -> None:
    return None


@pytest.mark.parametrize(
    ("security", "says"),
    [
        (
            {"security_protocol": "SASL_SSL"},
            "TRIPWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TRIPWIRE_KAFKA_SASL_MECHANISM: "
            "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
            "TRIPWIRE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512 needs TRIPWIRE_KAFKA_SASL_USERNAME "
            "and TRIPWIRE_KAFKA_SASL_PASSWORD.",
        ),
        (
            {"sasl_username": "key", "sasl_password": "secret"},
            "TRIPWIRE_KAFKA_SASL_USERNAME, TRIPWIRE_KAFKA_SASL_PASSWORD are set, but "
            "TRIPWIRE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT sends no SASL login: set "
            "TRIPWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "ssl_check_hostname": "false"},
            "needs TRIPWIRE_KAFKA_SASL_MECHANISM",
        ),
        (
            {"ssl_check_hostname": "false"},
            "TRIPWIRE_KAFKA_SSL_CHECK_HOSTNAME is set, but TRIPWIRE_KAFKA_SECURITY_PROTOCOL="
            "PLAINTEXT does not use TLS: set TRIPWIRE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            "TRIPWIRE_KAFKA_SASL_MECHANISM=OAUTHBEARER needs "
            "TRIPWIRE_KAFKA_SASL_OAUTH_TOKEN_PROVIDER: an importable `module:function`",
        ),
        (
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "sasl_oauth_token_provider": "msk_token",
            },
            "TRIPWIRE_KAFKA_SASL_OAUTH_TOKEN_PROVIDER='msk_token' is not `module:function`",
        ),
        (
            {"security_protocol": "SSL", "ssl_ca_file": "/nowhere/ca.pem"},
            "TRIPWIRE_KAFKA_SSL_CA_FILE=/nowhere/ca.pem does not exist: mount the file there",
        ),
        (
            {"security_protocol": "SSL", "ssl_key_file": "/nowhere/client.key"},
            "TRIPWIRE_KAFKA_SSL_KEY_FILE needs TRIPWIRE_KAFKA_SSL_CERT_FILE",
        ),
    ],
)
def test_a_combination_that_cannot_work_is_refused_naming_the_settings_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, security: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        settings(monkeypatch, **security)
    assert says in str(refused.value)


def test_secrets_stay_out_of_repr_and_of_the_settings_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(
        monkeypatch,
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="API-KEY-ID",
        sasl_password="the-api-secret",
    )
    for shown in (repr(s), str(s), s.model_dump_json(), repr(s.kafka_security)):
        assert "the-api-secret" not in shown and "API-KEY-ID" not in shown


def test_plaintext_adds_nothing_to_aiokafka_defaults() -> None:
    assert Settings().kafka_connection() == {"bootstrap_servers": "kafka-1:9093,kafka-2:9093"}


def test_sasl_ssl_gives_a_verifying_tls_context_and_the_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = settings(
        monkeypatch,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="tripwire",
        sasl_password="s3cret",
    )
    options = s.kafka_connection()
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tripwire",
        "sasl_plain_password": "s3cret",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_client_certificates_load_with_their_key_password(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    s = settings(
        monkeypatch,
        security_protocol="SSL",
        ssl_ca_file=pki.ca,
        ssl_cert_file=pki.client_cert,
        ssl_key_file=pki.client_key,
        ssl_key_password=KEY_PASSWORD,
        ssl_check_hostname="false",
    )
    context = s.kafka_connection()["ssl_context"]
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "tripwire test CA"),),)
    ]
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname


def test_a_wrong_key_password_names_the_files_and_the_password_setting(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    s = settings(
        monkeypatch,
        security_protocol="SSL",
        ssl_cert_file=pki.client_cert,
        ssl_key_file=pki.client_key,
        ssl_key_password="not-the-password",
    )
    with pytest.raises(ConfigurationError) as refused:
        s.kafka_connection()
    message = str(refused.value)
    assert f"TRIPWIRE_KAFKA_SSL_CERT_FILE={pki.client_cert}: cannot load" in message
    assert "TRIPWIRE_KAFKA_SSL_KEY_PASSWORD" in message and "not-the-password" not in message


@pytest.mark.parametrize("function", ["token_of_a_coroutine", "token_of_a_function"])
async def test_oauthbearer_takes_tokens_from_the_named_function(function: str) -> None:
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=f"{__name__}:{function}",
    )
    provider = client_options(security)["sasl_oauth_token_provider"]
    assert isinstance(provider, TokenProvider)
    assert await provider.token() == function.replace("token_of_a_", "from-a-")


@pytest.mark.parametrize(
    ("function", "says"),
    [
        ("no_such_module_here:token", "cannot import it (No module named 'no_such_module_here')"),
        (f"{__name__}:missing", "cannot import it"),
        (f"{__name__}:KEY_PASSWORD", "is a str, not a function"),
    ],
)
def test_a_token_provider_that_cannot_be_imported_is_named(function: str, says: str) -> None:
    security = KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=function
    )
    with pytest.raises(ConfigurationError) as refused:
        client_options(security)
    assert str(refused.value).startswith(f"TRIPWIRE_KAFKA_SASL_OAUTH_TOKEN_PROVIDER={function}")
    assert says in str(refused.value)


async def test_a_token_provider_that_returns_no_token_says_so() -> None:
    provider = TokenProvider(f"{__name__}:no_token", "TRIPWIRE_KAFKA_SASL_OAUTH_TOKEN_PROVIDER")
    with pytest.raises(ConfigurationError, match="returned NoneType, not a token string"):
        await provider.token()
