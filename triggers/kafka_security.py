"""How a Kafka connection authenticates and encrypts: one :class:`KafkaSecurity`, checked
where it is declared.

tripwire's own cluster takes it from the ``TRIPWIRE_KAFKA_*`` settings
(:attr:`triggers.settings.Settings.kafka_security`); a ``kafka://`` event source on
another cluster declares its own under ``security:``. :mod:`triggers.kafka_client` turns
it into aiokafka's arguments, and nothing else does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["MECHANISMS", "KafkaSecurity", "Mechanism", "Naming", "Protocol", "setting_name"]

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
MECHANISMS = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"

Naming = Callable[[str], str]
"""How a message names a field of :class:`KafkaSecurity` where the user wrote it."""

_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_oauth_token_provider")
_TLS_FIELDS = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file", "ssl_key_password")
_FILES = ("ssl_ca_file", "ssl_cert_file", "ssl_key_file")
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def setting_name(field: str) -> str:
    """The variable that sets ``field`` for tripwire's own cluster:
    ``ssl_ca_file`` -> ``TRIPWIRE_KAFKA_SSL_CA_FILE``."""
    return "TRIPWIRE_KAFKA_" + ("SECURITY_PROTOCOL" if field == "protocol" else field.upper())


class KafkaSecurity(BaseModel):
    """TLS and SASL of one Kafka connection. PLAINTEXT (the default) is neither."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Protocol = Field(
        "PLAINTEXT",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (a login without TLS) or SASL_SSL "
        "(a login over TLS, what managed clusters use).",
    )
    sasl_mechanism: Mechanism | None = Field(
        None,
        description="How a SASL_* connection logs in: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (user "
        "name and password) or OAUTHBEARER (a token from the token provider).",
    )
    sasl_username: SecretStr | None = Field(
        None, description="User name of a PLAIN or SCRAM login (Confluent Cloud: the API key)."
    )
    sasl_password: SecretStr | None = Field(
        None, description="Password of a PLAIN or SCRAM login (Confluent Cloud: the API secret)."
    )
    sasl_oauth_token_provider: str | None = Field(
        None,
        description="OAUTHBEARER: an importable `module:function` that returns a token string "
        "(a coroutine function, or a plain one, which runs in a thread); called for each "
        "new connection, so it returns a token that is still valid.",
    )
    ssl_ca_file: Path | None = Field(
        None,
        description="PEM file of the CA certificates that sign the brokers' certificates. "
        "Unset: the system's trusted CAs (enough for most managed clusters).",
    )
    ssl_cert_file: Path | None = Field(
        None,
        description="PEM file of the client certificate, for brokers that authenticate clients "
        "by certificate (mutual TLS); it may hold the key too.",
    )
    ssl_key_file: Path | None = Field(
        None, description="PEM file of the client certificate's private key."
    )
    ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted private key."
    )
    ssl_check_hostname: bool = Field(
        True,
        description="Whether a broker's certificate must name the host connected to. Turning "
        "it off is unsafe: anyone with a certificate from the same CA can pose as the broker. "
        "The certificate chain is still verified.",
    )

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        """Whether the connection logs in."""
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def problem(self, name: Naming = setting_name, *, files: bool = True) -> str | None:
        """What is wrong with this combination, naming each field with ``name``; None if
        nothing is. ``files``: also that the certificate and key files exist (where they
        are read: a worker, not the machine that deploys a source)."""
        protocol = f"{name('protocol')}={self.protocol}"
        if self.sasl and self.sasl_mechanism is None:
            return f"{protocol} needs {name('sasl_mechanism')}: {MECHANISMS}, one the cluster has."
        if not self.sasl and (stray := self._set(_SASL_FIELDS)):
            return (
                f"{_listed(stray, name)} set, but {protocol} sends no SASL login: set "
                f"{name('protocol')}=SASL_SSL (SASL_PLAINTEXT without TLS), or unset "
                f"{'it' if len(stray) == 1 else 'them'}."
            )
        unchecked = [] if self.ssl_check_hostname else ["ssl_check_hostname"]
        if not self.tls and (stray := self._set(_TLS_FIELDS) + unchecked):
            return (
                f"{_listed(stray, name)} set, but {protocol} does not use TLS: set "
                f"{name('protocol')}=SSL or SASL_SSL, or unset "
                f"{'it' if len(stray) == 1 else 'them'}."
            )
        if (found := self._login_problem(name)) is not None:
            return found
        if self.ssl_key_file is not None and self.ssl_cert_file is None:
            return f"{name('ssl_key_file')} needs {name('ssl_cert_file')}, the key's certificate."
        if self.ssl_key_password is not None and self.ssl_cert_file is None:
            return f"{name('ssl_key_password')} is set, but no {name('ssl_cert_file')} has a key."
        for field in _FILES if files else ():
            path = getattr(self, field)
            if path is not None and not path.is_file():
                return f"{name(field)}={path} does not exist: mount the file there or fix the path."
        return None

    def _login_problem(self, name: Naming) -> str | None:
        mechanism = f"{name('sasl_mechanism')}={self.sasl_mechanism}"
        if self.sasl_mechanism == "OAUTHBEARER":
            provider = self.sasl_oauth_token_provider
            if provider is None:
                return (
                    f"{mechanism} needs {name('sasl_oauth_token_provider')}: an importable "
                    "`module:function` that returns a token."
                )
            if not _FUNCTION.match(provider):
                return (
                    f"{name('sasl_oauth_token_provider')}={provider!r} is not `module:function` "
                    "(e.g. `mycompany.kafka_auth:token`)."
                )
            if stray := self._set(("sasl_username", "sasl_password")):
                return f"{_listed(stray, name)} not used by {mechanism}: unset them."
        elif self.sasl_mechanism is not None:
            if missing := [f for f in ("sasl_username", "sasl_password") if not getattr(self, f)]:
                return f"{mechanism} needs {' and '.join(name(f) for f in missing)}."
            if self.sasl_oauth_token_provider is not None:
                return f"{name('sasl_oauth_token_provider')} is for OAUTHBEARER, not {mechanism}."
        return None

    def _set(self, fields: tuple[str, ...]) -> list[str]:
        return [f for f in fields if getattr(self, f) is not None]


def _listed(fields: list[str], name: Naming) -> str:
    return f"{', '.join(name(f) for f in fields)} {'is' if len(fields) == 1 else 'are'}"
