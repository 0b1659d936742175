"""aiokafka clients connected as a :class:`~triggers.kafka_security.KafkaSecurity` says, and
why a broker refused one.

:func:`client_options` is the one place that builds aiokafka's security arguments: the
engine's producers, consumers and admin client, the API, ``publish()``, event sources,
egress and faust apps (:func:`triggers.faust.broker_settings`) all take theirs from it.

:func:`connect` starts a client. When the broker refuses it, aiokafka says only "Unable
to bootstrap" (the cause goes to its log), or leaks a parser's ``KeyError``; so
:func:`connect` asks the first broker again, one step at a time (TCP and TLS, the SASL
mechanism, the login), and raises :class:`~triggers.errors.KafkaSecurityError` naming the
broker, the cause and the setting to change. A broker that is down is no security
matter: that error goes on as it was, for the caller's retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiokafka.abc import AbstractTokenProvider

from triggers.error_text import exception_text
from triggers.errors import ConfigurationError, KafkaSecurityError, TripwireError
from triggers.kafka_security import KafkaSecurity, Naming, setting_name

__all__ = ["TokenProvider", "client_options", "connect"]

log = logging.getLogger(__name__)

_PROBE_TIMEOUT = 10.0  # seconds for each step of asking a refusing broker why
_HOSTNAME_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def client_options(security: KafkaSecurity, name: Naming = setting_name) -> dict[str, Any]:
    """aiokafka's keyword arguments for ``security``; none for PLAINTEXT (its default).

    Raises:
        ConfigurationError: the combination is invalid, or a CA file, certificate, key or
            token provider cannot be loaded; the message names the field with ``name``.
    """
    if (problem := security.problem(name, files=False)) is not None:
        raise ConfigurationError(problem)
    if security.protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.tls:
        options["ssl_context"] = _ssl_context(security, name)
    if security.sasl_mechanism == "OAUTHBEARER":
        function = security.sasl_oauth_token_provider
        assert function is not None  # problem() saw to it
        provider = TokenProvider(function, name("sasl_oauth_token_provider"))
        options["sasl_mechanism"] = "OAUTHBEARER"
        options["sasl_oauth_token_provider"] = provider
    elif security.sasl:
        assert security.sasl_username is not None and security.sasl_password is not None
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username.get_secret_value()
        options["sasl_plain_password"] = security.sasl_password.get_secret_value()
    return options


def _ssl_context(security: KafkaSecurity, name: Naming) -> ssl.SSLContext:
    ca = security.ssl_ca_file
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
    except OSError as exc:
        raise ConfigurationError(
            f"{name('ssl_ca_file')}={ca}: cannot read CA certificates from it ({exc})."
        ) from None
    context.check_hostname = security.ssl_check_hostname
    if not security.ssl_check_hostname:
        _warn_unchecked(name("ssl_check_hostname"))
    if security.ssl_cert_file is not None:
        password = security.ssl_key_password
        try:
            context.load_cert_chain(
                security.ssl_cert_file,
                security.ssl_key_file,
                # Never OpenSSL's own prompt: a worker has no terminal.
                password=lambda: password.get_secret_value() if password else "",
            )
        except OSError as exc:
            raise ConfigurationError(
                f"{name('ssl_cert_file')}={security.ssl_cert_file}: cannot load the client "
                f"certificate and its key ({exc}): is {name('ssl_key_file')} its key, and "
                f"{name('ssl_key_password')} the key's password?"
            ) from None
    return context


@functools.cache
def _warn_unchecked(setting: str) -> None:
    log.warning(
        "%s=false: brokers' certificates are not checked against their host names, so "
        "anyone with a certificate from the same CA can pose as the broker",
        setting,
    )


class TokenProvider(AbstractTokenProvider):
    """OAUTHBEARER tokens from the ``module:function`` a setting names."""

    def __init__(self, function: str, where: str) -> None:
        self.function = function
        self._where = where
        self._call = _imported(function, where)  # a typo fails when the client is made

    async def token(self) -> str:
        """A fresh token from the function, awaited, or run in a thread when it is plain."""
        try:
            if inspect.iscoroutinefunction(self._call):
                value = await self._call()
            else:
                value = await asyncio.to_thread(self._call)
        except Exception as exc:
            raise ConfigurationError(
                f"the OAUTHBEARER token provider {self.function} ({self._where}) raised "
                f"{exception_text(exc)}"
            ) from exc
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"the OAUTHBEARER token provider {self.function} ({self._where}) returned "
                f"{type(value).__name__}, not a token string."
            )
        return value

    def __repr__(self) -> str:
        return f"TokenProvider({self.function!r})"


def _imported(function: str, where: str) -> Callable[[], Any]:
    module, _, attribute = function.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{where}={function}: cannot import it ({exc}).") from None
    if not callable(found):
        raise ConfigurationError(f"{where}={function} is a {type(found).__name__}, not a function.")
    return found


class Startable(Protocol):
    """An aiokafka producer, consumer or admin client."""

    def start(self) -> Awaitable[None]: ...


async def connect(client: Startable, options: dict[str, Any], name: Naming = setting_name) -> None:
    """``await client.start()``, where ``options`` are what ``client`` was made with.

    Raises:
        KafkaSecurityError: the broker refused the connection's security (an untrusted or
            mismatched certificate, a refused SASL mechanism or login, a protocol that is
            not the listener's); the message names the broker, the cause, and the field
            (named with ``name``) to change.
        Exception: what ``start()`` raised, when it was no security matter.
    """
    try:
        await client.start()
    except TripwireError:
        raise  # ours already (a token provider that failed): it says what happened
    except Exception as exc:
        broker = _first_broker(options)
        cause = await _refusal(broker, options, name)
        if cause is None:
            raise
        raise KafkaSecurityError(
            f"cannot connect to the Kafka broker at {broker[0]}:{broker[1]}: {cause}"
        ) from exc


def _first_broker(options: dict[str, Any]) -> tuple[str, int]:
    servers = options["bootstrap_servers"]
    first = (servers.split(",") if isinstance(servers, str) else list(servers))[0].strip()
    host, _, port = first.rpartition(":")
    return (host.strip("[]") or first, int(port) if port.isdigit() else 9092)


async def _refusal(broker: tuple[str, int], options: dict[str, Any], name: Naming) -> str | None:
    """Why ``broker`` refuses a connection made with ``options``, said for a person; None
    when it is no security matter (nothing listens there, or it lets us in now)."""
    from aiokafka.conn import create_conn
    from aiokafka.protocol.admin import SaslHandShakeRequest
    from aiokafka.protocol.metadata import MetadataRequest

    protocol = options.get("security_protocol", "PLAINTEXT")
    tls = protocol in ("SSL", "SASL_SSL")
    host, port = broker
    transport = {
        "security_protocol": "SSL" if tls else "PLAINTEXT",
        "ssl_context": options.get("ssl_context"),
        "request_timeout_ms": int(_PROBE_TIMEOUT * 1000),
    }
    # 1. TCP, TLS and the first request (ApiVersions), which brokers answer before a login.
    try:
        conn = await create_conn(host, port, **transport)
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(exc, host, name)
    except ssl.SSLError as exc:
        return (
            f"the TLS handshake failed ({exc.reason or exc}): the broker may want a client "
            f"certificate ({name('ssl_cert_file')}) signed by a CA it trusts."
        )
    except TimeoutError:
        if not tls:
            return None
        return (
            f"it did not finish the TLS handshake in {_PROBE_TIMEOUT:g}s: if its listener is "
            f"not TLS, set {name('protocol')}=PLAINTEXT (or SASL_PLAINTEXT)."
        )
    except ConnectionRefusedError:
        return None  # down, not refusing
    except Exception as exc:
        if tls:
            return (
                f"it ended the TLS connection before answering ({_said(exc)}): it may "
                f"want a client certificate ({name('ssl_cert_file')}) signed by a CA it trusts."
            )
        return (
            f"it closed the connection before answering ({_said(exc)}): if its listener "
            f"speaks TLS, set {name('protocol')}=SSL (or SASL_SSL)."
        )
    try:
        mechanism = options.get("sasl_mechanism")
        if mechanism is None:
            # 2. Without a login: a broker that wants one closes at the first real request.
            try:
                await conn.send(MetadataRequest([]))
            except Exception as exc:
                return (
                    f"it closed the connection at the first request ({_said(exc)}), as a "
                    f"broker that wants a login does: set {name('protocol')}=SASL_SSL (or "
                    f"SASL_PLAINTEXT) and {name('sasl_mechanism')}."
                )
            return None
        # 3. The mechanism: does the broker offer it?
        try:
            offered = await conn.send(SaslHandShakeRequest(mechanism))
        except Exception:
            offered = None  # some brokers close the connection instead of answering
        if offered is None or offered.error_code or mechanism not in offered.enabled_mechanisms:
            listed = ", ".join(offered.enabled_mechanisms) if offered else ""
            return (
                f"it refused SASL mechanism {mechanism}"
                + (f" (it offers {listed})" if listed else "")
                + f": set {name('sasl_mechanism')} to one the cluster offers."
            )
    finally:
        conn.close()
    # 4. The login itself.
    try:
        login = await _logged_in(host, port, options)
    except TripwireError as exc:
        return str(exc)
    except (TimeoutError, ConnectionRefusedError):
        return None
    except Exception as exc:
        if mechanism == "OAUTHBEARER":
            return (
                f"it rejected the OAUTHBEARER token of {name('sasl_oauth_token_provider')} "
                f"({_said(exc)})."
            )
        return (
            f"it rejected the {mechanism} login ({_said(exc)}): check "
            f"{name('sasl_username')} and {name('sasl_password')}."
        )
    login.close()
    return None


def _untrusted(exc: ssl.SSLCertVerificationError, host: str, name: Naming) -> str:
    said = exc.verify_message or exc.reason or str(exc)
    if exc.verify_code in _HOSTNAME_MISMATCH:
        return (
            f"its certificate is not for {host} ({said}): connect through a name the "
            f"certificate holds, or (unsafe) set {name('ssl_check_hostname')}=false."
        )
    return (
        f"its certificate is not trusted ({said}): set {name('ssl_ca_file')} to the CA "
        "certificate that signed it."
    )


def _said(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _logged_in(host: str, port: int, options: dict[str, Any]) -> Any:
    """A connection made with ``options``, logged in. A SCRAM server's error (``e=...``)
    is raised as what the server said, where aiokafka fails on a missing key."""
    from aiokafka import conn as aiokafka_conn
    from aiokafka.errors import AuthenticationFailedError

    class ScramTelling(aiokafka_conn.ScramAuthenticator):
        def process_server_final_message(self, server_final: str) -> None:
            if server_final.startswith("e="):
                raise AuthenticationFailedError(f"the broker said {server_final[2:]!r}")
            super().process_server_final_message(server_final)

    class Telling(aiokafka_conn.AIOKafkaConnection):
        def authenticator_scram(self) -> Any:
            return ScramTelling(
                loop=self._loop,
                sasl_plain_password=self._sasl_plain_password,
                sasl_plain_username=self._sasl_plain_username,
                sasl_mechanism=self._sasl_mechanism,
            )

    wanted = {
        k: v
        for k, v in options.items()
        if k.startswith(("sasl_", "ssl_context", "security_protocol"))
    }
    conn = Telling(host, port, request_timeout_ms=int(_PROBE_TIMEOUT * 1000), **wanted)
    try:
        await conn.connect()
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    return conn
