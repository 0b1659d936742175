"""Event sources: messages on another bus, turned into tripwire events.

A source is declared in YAML (a file with a top-level ``sources:`` list) or in
Python (an :class:`EventSource` at the top level of a flow file), and deployed
with ``tripwire deploy`` like a flow::

    sources:
      - name: orders_nats
        url: nats://127.0.0.1:4222
        subject: orders.>
        stream: ORDERS              # JetStream, with a durable consumer; omit for core NATS
        event: orders_loaded        # or "$.type", or "orders_{$.region}", or "{subject}"
        id: $.order_id              # default: the message's own id where it has one
        filters: ["$.amount >= 100"]

The URL's scheme says which bus: ``nats://``, ``mqtt://``, ``amqp://`` (RabbitMQ),
``redis://``, ``kafka://host:port[,host:port]`` or ``postgresql://``. Each bus has
one field naming where to read (:data:`ADDRESS`), and a few optional ones.

``event``, ``id`` and ``time`` are *expressions*: a literal (``orders_loaded``), a
JSONPath over the payload (``$.type``), or a template mixing text with ``{$.path}``
and ``{subject}``, ``{id}``, ``{key}`` or ``{headers.NAME}`` from the message
(:data:`MESSAGE_FIELDS`). ``${NAME}`` (or ``${NAME:-default}``) in the URL is read from
the environment of the process that runs the source, so secrets never reach the run
store. ``kafka://`` without brokers reads tripwire's own cluster.

A wrong declaration raises a DeclarationError located at it
(:mod:`triggers.locations`): ``flows/orders.py:7: source 'orders_nats': <what is
wrong>``, or with the YAML file and the line of the list item.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from triggers.envelope import validate_event_name
from triggers.errors import ConfigurationError, DeclarationError
from triggers.filters import Filter, TimeOfDay, parse_filter
from triggers.jsonpath import compile_jsonpath
from triggers.kafka_security import KafkaSecurity
from triggers.locations import at_caller, located, shown_path

__all__ = [
    "ADDRESS",
    "KINDS",
    "MESSAGE_FIELDS",
    "EventSource",
    "Expression",
    "declared",
    "load_sources_file",
    "parse_expression",
    "resolve_url",
    "shown_url",
]

Kind = Literal["nats", "mqtt", "rabbitmq", "redis", "kafka", "postgres"]
KINDS: dict[str, Kind] = {
    "nats": "nats",
    "tls": "nats",
    "mqtt": "mqtt",
    "mqtts": "mqtt",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "redis": "redis",
    "rediss": "redis",
    "kafka": "kafka",
    "postgresql": "postgres",
    "postgres": "postgres",
}
# The field that names where each bus is read from.
ADDRESS: dict[Kind, str] = {
    "nats": "subject",
    "mqtt": "topic",
    "rabbitmq": "queue",
    "redis": "stream",
    "kafka": "topic",
    "postgres": "channel",
}
# The optional fields each bus takes besides the common ones.
_OPTIONS: dict[Kind, frozenset[str]] = {
    "nats": frozenset({"stream", "durable", "queue_group", "start", "ack_wait"}),
    "mqtt": frozenset({"qos", "client_id"}),
    "rabbitmq": frozenset({"exchange", "routing_key", "prefetch"}),
    "redis": frozenset({"group", "start", "claim_after", "field"}),
    "kafka": frozenset({"group", "start", "security"}),
    "postgres": frozenset(),
}
MESSAGE_FIELDS = ("subject", "id", "key", "time")
_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SECRETS = ("sasl_username", "sasl_password", "ssl_key_password")  # never in a declaration
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Expression(BaseModel):
    """A parsed ``event``/``id``/``time`` expression: ``parts`` are literal text and
    placeholders (``$...`` JSONPaths, message fields, ``headers.NAME``)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    text: str
    kind: Literal["literal", "jsonpath", "template"]
    parts: tuple[tuple[bool, str], ...] = Field(description="(is_placeholder, text) pairs.")


def parse_expression(text: object, *, where: str) -> Expression:
    """Parse an expression (see the module docs).

    Raises:
        DeclarationError: not a string, an invalid JSONPath or an unknown placeholder.
    """
    if not isinstance(text, str) or not text:
        raise DeclarationError(f"{where}: give a non-empty string, not {text!r}.")
    if text.startswith("$") and not text.startswith("${"):
        compile_jsonpath(text)
        return Expression(text=text, kind="jsonpath", parts=((True, text),))
    parts: list[tuple[bool, str]] = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > last:
            parts.append((False, text[last : match.start()]))
        name = match.group(1).strip()
        if name.startswith("$"):
            compile_jsonpath(name)
        elif name not in MESSAGE_FIELDS and not (name.startswith("headers.") and name[8:]):
            raise DeclarationError(
                f"{where}: unknown placeholder {{{name}}} in {text!r}; use a JSONPath like "
                f"{{$.region}}, one of {', '.join('{' + f + '}' for f in MESSAGE_FIELDS)}, "
                "or {headers.NAME}."
            )
        parts.append((True, name))
        last = match.end()
    if last < len(text):
        parts.append((False, text[last:]))
    literal = "".join(p for placeholder, p in parts if not placeholder)
    if "{" in literal or "}" in literal:
        raise DeclarationError(f"{where}: unbalanced braces in {text!r}.")
    kind: Literal["literal", "template"] = "template" if any(p for p, _ in parts) else "literal"
    return Expression(text=text, kind=kind, parts=tuple(parts))


class EventSource(BaseModel):
    """One event source; see the module docs. Declare it at the top level of a flow file
    (``orders = EventSource(name=..., url=..., subject=..., event=...)``) or in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str = Field(description="Identifies the source: lowercase letters, digits, _ and -.")
    url: str = Field(description="The bus: its scheme says which. ${NAME} reads the environment.")
    event: str = Field(description="The event name: literal, JSONPath or template.")
    # Where to read: the one that matches the URL's scheme (ADDRESS).
    subject: str | None = Field(None, description="NATS subject (wildcards allowed).")
    topic: str | None = Field(None, description="MQTT topic filter, or Kafka topic.")
    queue: str | None = Field(None, description="RabbitMQ queue (declared durable if missing).")
    stream: str | None = Field(
        None, description="Redis stream key; for NATS, the JetStream stream (durable consumer)."
    )
    channel: str | None = Field(None, description="PostgreSQL LISTEN channel.")
    # How to make an event of a message.
    id: str | None = Field(
        None, description="Event id expression; default: the message's own id where it has one."
    )
    time: str | None = Field(
        None, description="Event time expression (ISO 8601 or epoch seconds); default: the bus's."
    )
    payload: str = Field("$", description="JSONPath selecting the payload in a JSON body.")
    format: Literal["auto", "json", "text"] = Field(
        "auto",
        description=(
            "auto: a JSON object is the payload, anything else is wrapped as {'body': ...}; "
            "json: the body must be JSON; text: always {'body': text}."
        ),
    )
    filters: tuple[Filter | TimeOfDay, ...] = Field(
        (), description="Messages that fail them are acknowledged and dropped (counted)."
    )
    filters_operator: Literal["and", "or"] = "and"
    # Options of some buses.
    durable: str | None = Field(None, description="NATS JetStream durable consumer name.")
    queue_group: str | None = Field(None, description="Core NATS queue group.")
    ack_wait: float | None = Field(
        None, gt=0, description="JetStream: seconds before an unacknowledged message is resent."
    )
    start: Literal["new", "all"] | None = Field(
        None,
        description=(
            "Where a new consumer (JetStream durable, Redis group, Kafka group) starts: "
            "new messages only (default) or all retained ones."
        ),
    )
    qos: Literal[0, 1, 2] | None = Field(None, description="MQTT subscription QoS (default 1).")
    client_id: str | None = Field(None, description="MQTT client id (a persistent session).")
    exchange: str | None = Field(None, description="RabbitMQ exchange to bind the queue to.")
    routing_key: str | None = Field(None, description="Binding key (default '#').")
    prefetch: int | None = Field(None, ge=1, le=10_000, description="RabbitMQ prefetch count.")
    group: str | None = Field(None, description="Redis or Kafka consumer group.")
    field: str | None = Field(
        None, description="Redis: the entry field holding the body (default: all fields)."
    )
    claim_after: float | None = Field(
        None, gt=0, description="Redis: seconds before a dead consumer's pending messages move."
    )
    security: KafkaSecurity | None = Field(
        None,
        description=(
            "Kafka on another cluster: its TLS and SASL (protocol, sasl_mechanism, ssl_ca_file, "
            "...), with the user name and password in the URL (kafka://${USER}:${PASSWORD}@...). "
            "Default: PLAINTEXT; `kafka://` without brokers connects as tripwire does."
        ),
    )

    def __init__(self, **data: Any) -> None:
        """As pydantic's, but a wrong declaration raises DeclarationError naming the fields;
        written in Python, located at its line, as the decorators' are."""
        # model_validate calls this too: data read from YAML or a store is located by
        # whoever read it.
        written = not sys._getframe(1).f_globals.get("__name__", "").startswith("pydantic")
        with at_caller(_subject(data.get("name"))) if written else nullcontext():
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise DeclarationError(_problems(exc)) from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"invalid source name {value!r}: use lowercase letters, digits, '_' and '-', "
                "starting with a letter, at most 63 characters (e.g. 'orders_nats')"
            )
        return value

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> tuple[Filter | TimeOfDay, ...]:
        if isinstance(value, str | dict):
            value = [value]
        return tuple(
            item if isinstance(item, Filter | TimeOfDay) else parse_filter(item, where="filters")
            for item in value or ()
        )

    @model_validator(mode="after")
    def _valid(self) -> EventSource:
        kind = self.kind
        address = ADDRESS[kind]
        if not getattr(self, address):
            raise ValueError(f"a {kind} source needs {address!r} (where to read)")
        allowed = {address} | _OPTIONS[kind]
        given = {
            field
            for field in (*ADDRESS.values(), *set().union(*_OPTIONS.values()))
            if getattr(self, field) is not None
        }
        extra = sorted(given - allowed)
        if extra:
            raise ValueError(
                f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to a "
                f"{kind} source; it takes {address!r} and optionally "
                f"{', '.join(sorted(_OPTIONS[kind])) or 'nothing else'}"
            )
        if kind == "nats" and self.stream is None and (self.durable or self.start or self.ack_wait):
            raise ValueError("durable, start and ack_wait need a JetStream 'stream'")
        if kind == "nats" and self.stream is not None and self.queue_group:
            raise ValueError("queue_group is for core NATS; a JetStream durable is shared already")
        if kind == "kafka":
            self._kafka_security_valid()
        for field in ("id", "time"):
            value = getattr(self, field)
            if value is not None:
                parse_expression(value, where=field)
        if parse_expression(self.event, where="event").kind == "literal":
            validate_event_name(self.event, error=DeclarationError)
            compile_jsonpath(self.payload)
        return self

    def _kafka_security_valid(self) -> None:
        if not urlsplit(self.url).netloc:
            if self.security is None:
                return
            raise ValueError(
                "a kafka:// source without brokers reads tripwire's own cluster, as tripwire "
                "connects to it (TRIPWIRE_KAFKA_*): drop 'security', or name the brokers"
            )
        secrets = [f for f in _SECRETS if self.security and getattr(self.security, f)]
        if secrets:
            raise ValueError(
                f"security.{secrets[0]}: put the user name and password in the URL, "
                "kafka://${USER}:${PASSWORD}@host:port, so that they stay in the environment "
                "of the worker (an encrypted key's password is not supported: mount the key "
                "unencrypted from a Secret)"
            )
        problem = self.kafka_security(self.url).problem(self.security_field, files=False)
        if problem is not None:
            raise ValueError(problem)

    def kafka_security(self, url: str) -> KafkaSecurity:
        """How a kafka source on another cluster connects: its ``security``, with the user
        name and password of ``url`` (resolved where the source runs)."""
        parts = urlsplit(url)
        login = {
            "sasl_username": parts.username,
            "sasl_password": parts.password,
        }
        return (self.security or KafkaSecurity()).model_copy(
            update={k: SecretStr(unquote(v)) if v else None for k, v in login.items()}
        )

    @staticmethod
    def security_field(field: str) -> str:
        """How messages name a field of :meth:`kafka_security` in a declaration."""
        if field in ("sasl_username", "sasl_password"):
            return f"the {'user name' if field == 'sasl_username' else 'password'} in the URL"
        return f"security.{field}"

    @property
    def origin(self) -> str:
        """The CloudEvent ``source`` of the events it publishes."""
        return f"tripwire://sources/{self.name}"

    @property
    def kind(self) -> Kind:
        """The bus, from the URL's scheme."""
        scheme = urlsplit(self.url).scheme.lower()
        if scheme not in KINDS:
            raise ValueError(
                f"unknown scheme {scheme + '://' if scheme else 'in ' + repr(self.url)}; use one "
                f"of {', '.join(s + '://' for s in KINDS)}"
            )
        return KINDS[scheme]

    @property
    def address(self) -> str:
        """Where it reads: the subject, topic, queue, stream or channel."""
        value = getattr(self, ADDRESS[self.kind])
        assert value is not None
        return str(value)

    @property
    def acknowledged(self) -> bool:
        """Whether the bus redelivers a message that was not acknowledged."""
        return not (self.kind == "postgres" or (self.kind == "nats" and self.stream is None))

    def describe(self) -> str:
        """One line: bus, where, and the event it makes."""
        jet = f" (JetStream {self.stream})" if self.kind == "nats" and self.stream else ""
        return f"{self.kind} {self.address}{jet} -> {self.event}"


def resolve_url(url: str) -> str:
    """``url`` with each ``${NAME}`` replaced by that environment variable, and each
    ``${NAME:-default}`` by the variable or, when it is unset or empty, the default.

    Raises:
        ConfigurationError: a variable it names without a default is not set.
    """

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if default is not None:
            return os.environ.get(name) or default
        if name not in os.environ:
            raise ConfigurationError(
                f"the source URL {shown_url(url)} names ${{{name}}}, which is not set in this "
                "process's environment; set it where the source runs (the worker)."
            )
        return os.environ[name]

    return _ENV.sub(value, url)


def shown_url(url: str) -> str:
    """``url`` without its password, for logs and listings; ``${NAME}`` references stay,
    since they name where the secret is, not the secret."""
    names: list[str] = []

    def hide(match: re.Match[str]) -> str:
        names.append(match.group(0))
        return f"tripwireenv{len(names) - 1}x"

    parts = urlsplit(_ENV.sub(hide, url))
    if parts.password is None or re.fullmatch(r"tripwireenv\d+x", parts.password):
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    shown = urlunsplit(parts._replace(netloc=netloc))
    for index, name in enumerate(names):
        shown = shown.replace(f"tripwireenv{index}x", name)
    return shown


def load_sources_file(path: Path) -> list[EventSource]:
    """The sources a YAML file declares under a top-level ``sources:`` list.

    Raises:
        DeclarationError: not YAML, no ``sources`` list, or a source is invalid; the
            message names the file, the source and the field.
    """
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise DeclarationError(f"{shown_path(path)}: cannot read it: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # the nodes: where each item is
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        with located(path, mark.line + 1 if mark is not None else None, "sources file"):
            raise DeclarationError(f"it is not valid YAML: {problem}; fix its syntax") from None
    if not isinstance(document, dict) or not isinstance(document.get("sources"), list):
        raise DeclarationError(
            f"{path}: expected a top-level 'sources:' list of sources, each with name, url, "
            "event and where to read (subject, topic, queue, stream or channel)."
        )
    lines = _item_lines(root)
    found: list[EventSource] = []
    for index, item in enumerate(document["sources"]):
        name = item.get("name") if isinstance(item, dict) else None
        subject = _subject(name) if isinstance(name, str) else f"sources[{index}]"
        with located(path, lines[index] if index < len(lines) else None, subject):
            found.append(declared(item))
    return found


def _item_lines(root: Any) -> list[int]:
    """The line of each item of the top-level ``sources:`` list, from the YAML node tree
    of a mapping that has it (none when a merge key brought it)."""
    found = [value.value for key, value in root.value if key.value == "sources"]
    return [item.start_mark.line + 1 for item in found[-1]] if found else []


def declared(item: Any) -> EventSource:
    """Validate one source declaration (a mapping), naming the field that is wrong.

    Raises:
        DeclarationError: the declaration is invalid.
    """
    if isinstance(item, EventSource):
        return item
    try:
        return EventSource.model_validate(item)
    except ValidationError as exc:
        raise DeclarationError(_problems(exc)) from None


def _subject(name: object) -> str:
    """What the errors of a source's declaration name: the source."""
    return f"source {name!r}" if isinstance(name, str) else "source without a name"


def _problems(exc: ValidationError) -> str:
    """pydantic's errors as one line: ``field: what is wrong; ...`` (without a field for a
    problem of the whole source)."""
    problems = []
    for error in exc.errors():
        what = error["msg"].removeprefix("Value error, ")
        problems.append(f"{'.'.join(map(str, error['loc']))}: {what}" if error["loc"] else what)
    return "; ".join(problems)
