"""Where runs execute: a target URL, whose scheme picks the launcher, and its options.

A flow names its target with :func:`triggers.target`; the default is
``local://`` (a Python process on the worker's machine). Options are validated
when the decorator runs, against the model of the target's scheme, and travel
with every run request, so a worker needs nothing but the run to launch it.

Templates (a ``command://`` argv, an ``http(s)://`` body) take values as data,
never as code: ``"{day}"`` is replaced by the value of parameter ``day``; a
string that is exactly one placeholder keeps the value's JSON type in a body.
No shell and no template engine ever sees a value.
"""

from __future__ import annotations

import json
import re
import string
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from triggers.errors import DeclarationError
from triggers.spec import parse_duration

__all__ = [
    "CONTEXT_FIELDS",
    "AirflowTarget",
    "ArgoTarget",
    "CommandTarget",
    "DagsterTarget",
    "FlyteTarget",
    "HttpTarget",
    "KubernetesTarget",
    "PrefectTarget",
    "TargetSpec",
    "as_text",
    "parse_target",
    "placeholders",
    "render",
]

CONTEXT_FIELDS = ("run_name", "project", "domain", "flow", "parameters", "events")
"""Placeholders every template may use besides the flow's parameters."""


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class CommandTarget(_Options):
    """``command://``: run an argv, with no shell; exit code 0 means SUCCEEDED."""

    argv: tuple[str, ...] = Field(
        min_length=1,
        description="Program and arguments; each item may hold {placeholders}, replaced by "
        "the value as one argument (never split, never given to a shell).",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables (templates allowed)."
    )
    cwd: str | None = Field(None, description="Working directory; default the worker's.")


class HttpTarget(_Options):
    """``http(s)://``: POST a JSON body rendered from a template; the status says the outcome."""

    method: Literal["POST", "PUT"] = "POST"
    body: Any = Field(
        None,
        description="JSON template; None sends {run_name, project, domain, flow, parameters, "
        "events}.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    success: tuple[int, ...] = Field(
        (200, 201, 202, 204), description="Status codes that mean the run SUCCEEDED."
    )
    retries: int = Field(
        5, ge=0, le=50, description="Further tries after a 5xx, a 429 or a connection error."
    )
    backoff: timedelta = Field(
        timedelta(seconds=1),
        description="Wait before the first retry, doubled each time (with jitter), unless the "
        "server sends Retry-After.",
    )
    max_backoff: timedelta = Field(timedelta(minutes=1), description="Cap of one wait.")
    timeout: timedelta = Field(timedelta(seconds=30), description="Timeout of one request.")
    hmac_secret_env: str | None = Field(
        None,
        description="Name of an environment variable of the worker holding an HMAC key: the "
        "body is signed (X-Tripwire-Signature: sha256=HEX). The key itself never enters a spec.",
    )

    @field_validator("backoff", "max_backoff", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        try:
            return parse_duration(value, what="duration")
        except DeclarationError as exc:
            raise ValueError(str(exc).rstrip(".")) from None

    @field_serializer("backoff", "max_backoff", "timeout")
    def _seconds(self, value: timedelta) -> float:
        return value.total_seconds()  # what _duration reads back, unlike ISO 8601

    @field_validator("success")
    @classmethod
    def _codes(cls, codes: tuple[int, ...]) -> tuple[int, ...]:
        bad = [c for c in codes if not 100 <= c <= 599]
        if bad or not codes:
            raise ValueError(f"success must list HTTP status codes (100-599), not {list(codes)}")
        return codes


class KubernetesTarget(_Options):
    """``k8s://NAMESPACE``: each attempt is a ``batch/v1`` Job running the flow in a pod."""

    image: str | None = Field(
        None, description="Container image with the flow's code; default TRIPWIRE_KUBE_IMAGE."
    )
    cpu: str | None = Field(None, description="CPU request and limit, e.g. '500m' or '2'.")
    memory: str | None = Field(None, description="Memory request and limit, e.g. '2Gi'.")
    gpu: int | None = Field(None, ge=1, description="nvidia.com/gpu limit.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables (templates allowed)."
    )
    service_account: str | None = Field(None, description="The pod's service account.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels.")


class ArgoTarget(_Options):
    """``argo://NAMESPACE/TEMPLATE``: each attempt is an Argo Workflow of a WorkflowTemplate."""

    parameters: dict[str, str] | None = Field(
        None,
        description="Workflow argument -> template; None passes each flow parameter as text "
        "under its own name.",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels.")


_TLS = Field(
    None,
    description="https (True) or http (False) to the server; None: https, except to "
    "localhost and loopback addresses.",
)


class PrefectTarget(_Options):
    """``prefect://[SERVER]/FLOW/DEPLOYMENT``: each attempt is a flow run of a Prefect 3
    deployment, created through Prefect's REST API."""

    parameters: dict[str, Any] | None = Field(
        None,
        description="The flow run's parameters, a JSON template; None passes the flow's "
        "parameters as they are.",
    )
    tags: tuple[str, ...] = Field((), description="Extra tags of the flow run.")
    api_key_env: str | None = Field(
        None,
        description="Name of the worker's environment variable that holds the Prefect API key "
        "(Prefect Cloud), sent as a bearer token. The key itself never enters a spec.",
    )
    auth_string_env: str | None = Field(
        None,
        description="Name of the worker's environment variable that holds a self-hosted "
        "server's 'user:password' (its PREFECT_SERVER_API_AUTH_STRING), sent as basic auth.",
    )
    ui_url: str | None = Field(
        None, description="Base of the links to flow runs; default the API's server."
    )
    tls: bool | None = _TLS


class AirflowTarget(_Options):
    """``airflow://[SERVER]/DAG_ID``: each attempt is a DAG run, triggered through Airflow
    3's REST API."""

    conf: dict[str, Any] | None = Field(
        None,
        description="The DAG run's conf, a JSON template; None passes the flow's parameters "
        "as they are.",
    )
    username_env: str | None = Field(
        None,
        description="Name of the worker's environment variable that holds the user to get an "
        "API token with (POST /auth/token).",
    )
    password_env: str | None = Field(
        None, description="Name of the worker's environment variable that holds its password."
    )
    token_env: str | None = Field(
        None,
        description="Name of the worker's environment variable that holds a ready API token "
        "(JWT), instead of a user and password.",
    )
    tls: bool | None = _TLS


class DagsterTarget(_Options):
    """``dagster://[SERVER]/[LOCATION/]JOB``: each attempt is a run of a Dagster job,
    launched through Dagster's GraphQL API."""

    run_config: dict[str, Any] | None = Field(
        None,
        description="The run config, a JSON template that says where the parameters go, e.g. "
        '{"ops": {"load": {"config": {"day": "{day}"}}}}; None: an empty run config.',
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags of the run (templates allowed)."
    )
    repository: str = Field(
        "__repository__",
        description="The repository in the code location; the default is that of a "
        "Definitions object.",
    )
    token_env: str | None = Field(
        None,
        description="Name of the worker's environment variable that holds a Dagster+ user "
        "token (sent as Dagster-Cloud-Api-Token).",
    )
    tls: bool | None = _TLS


class FlyteTarget(_Options):
    """``flyte://[PROJECT/DOMAIN/]ENV.TASK``: each attempt is a run of a Flyte 2 task,
    started with the ``flyte`` SDK."""

    inputs: dict[str, Any] | None = Field(
        None,
        description="The task's inputs, a JSON template; None passes the flow's parameters "
        "as they are.",
    )
    mode: Literal["remote", "local"] = Field(
        "remote",
        description="remote: on the Flyte backend the worker's Flyte config names; local: in "
        "Flyte's local mode, in a process on the worker's machine.",
    )
    module: str | None = Field(
        None,
        description="Local mode: the module or .py file that defines the task's TaskEnvironment.",
    )
    python: str | None = Field(
        None,
        description="Local mode: the interpreter with the flyte SDK and the task's code; "
        "default the worker's.",
    )
    version: str | None = Field(
        None, description="Remote mode: the task's version; default latest."
    )
    config: str | None = Field(
        None, description="Remote mode: a Flyte config file; default Flyte's own look-up."
    )

    @model_validator(mode="after")
    def _local_needs_code(self) -> FlyteTarget:
        if self.mode == "local" and not self.module:
            raise ValueError(
                'mode="local" runs the task on the worker: give module= (the module or .py '
                "file that defines its TaskEnvironment)"
            )
        return self


_OPTIONS: dict[str, type[_Options] | None] = {
    "local": None,
    "command": CommandTarget,
    "http": HttpTarget,
    "https": HttpTarget,
    "k8s": KubernetesTarget,
    "argo": ArgoTarget,
    "prefect": PrefectTarget,
    "airflow": AirflowTarget,
    "dagster": DagsterTarget,
    "flyte": FlyteTarget,
}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class TargetSpec(BaseModel):
    """A target URL and its options, as a deployed flow carries them."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    url: str = "local://"
    options: dict[str, Any] = Field(default_factory=dict)

    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    def model(self) -> _Options | None:
        """The options, validated by the model of the URL's scheme."""
        kind = _OPTIONS[self.scheme()]
        return kind.model_validate(self.options) if kind is not None else None


def parse_target(url: str, options: dict[str, Any], parameters: list[str]) -> TargetSpec:
    """Validate a target URL, its options and the placeholders its templates use.

    Raises:
        DeclarationError: unknown scheme, bad options, or a placeholder that is neither a
            parameter nor one of :data:`CONTEXT_FIELDS`.
    """
    scheme = urlsplit(url).scheme if isinstance(url, str) else ""
    if scheme not in _OPTIONS:
        raise DeclarationError(
            f"target {url!r}: the scheme must be one of "
            f"{', '.join(s + '://' for s in _OPTIONS)}, e.g. 'command://'."
        )
    if scheme in ("http", "https") and not urlsplit(url).netloc:
        raise DeclarationError(f"target {url!r} has no host; write e.g. 'https://ci.example/run'.")
    if scheme in ("k8s", "argo"):
        _cluster_url(url, scheme)
    if scheme in _ORCHESTRATOR_URLS:
        _orchestrator_url(url, scheme)
    kind = _OPTIONS[scheme]
    if kind is None:
        if options:
            raise DeclarationError(f"target {url!r} takes no options, not {sorted(options)}.")
        return TargetSpec(url=url)
    try:
        model = kind.model_validate(options)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "options"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise DeclarationError(f"target {url!r}: {where}: {message}.") from None
    known = set(parameters) | set(CONTEXT_FIELDS)
    unknown = sorted(placeholders(model.model_dump(mode="json")) - known)
    if unknown:
        raise DeclarationError(
            f"target {url!r}: unknown placeholder(s) {unknown}; use the flow's parameters "
            f"{parameters} or {list(CONTEXT_FIELDS)}. Write {{{{ and }}}} for literal braces."
        )
    return TargetSpec(url=url, options=model.model_dump(mode="json", exclude_defaults=True))


def _cluster_url(url: str, scheme: str) -> None:
    parts = urlsplit(url)
    names = [parts.netloc, *(p for p in parts.path.split("/") if p)]
    wanted = 2 if scheme == "argo" else 1
    example = "argo://data/nightly-etl" if scheme == "argo" else "k8s://data"
    if len(names) != wanted or not all(_DNS_LABEL.match(n) for n in names):
        raise DeclarationError(
            f"target {url!r}: write {example} (namespace"
            f"{' and WorkflowTemplate' if scheme == 'argo' else ''}: lowercase letters, digits "
            "and '-')."
        )


_ORCHESTRATOR_URLS = {  # scheme -> (names the path takes, the form, an example)
    "prefect": ((2,), "prefect://[SERVER]/FLOW/DEPLOYMENT", "prefect://prefect:4200/etl/nightly"),
    "airflow": ((1,), "airflow://[SERVER]/DAG_ID", "airflow://airflow:8080/nightly_etl"),
    "dagster": ((1, 2), "dagster://[SERVER]/[LOCATION/]JOB", "dagster://dagster:3000/etl/load"),
    "flyte": (
        (1, 3),
        "flyte://[PROJECT/DOMAIN/]ENV.TASK",
        "flyte://flytesnacks/development/etl.load",
    ),
}


def _orchestrator_url(url: str, scheme: str) -> None:
    counts, form, example = _ORCHESTRATOR_URLS[scheme]
    parts = urlsplit(url)
    names = [unquote(p) for p in parts.path.split("/") if p]
    if scheme == "flyte":  # no server: the Flyte config names it
        names = [unquote(parts.netloc), *names] if parts.netloc else names
    task = names[-1] if names else ""
    wrong = len(names) not in counts or (scheme == "flyte" and "." not in task.strip("."))
    if wrong or parts.query or parts.fragment:
        raise DeclarationError(f"target {url!r}: write {form}, e.g. {example!r}.")


def placeholders(template: Any) -> set[str]:
    """Every ``{name}`` used in the strings of ``template``.

    Raises:
        DeclarationError: a string is not a valid template (an unclosed brace).
    """
    if isinstance(template, str):
        try:
            fields = [f for f in string.Formatter().parse(template) if f[1] is not None]
        except ValueError as exc:
            raise DeclarationError(f"template {template!r}: {exc}.") from None
        for _, name, spec, conversion in fields:
            if spec or conversion or not (name or "").isidentifier():
                raise DeclarationError(
                    f"template {template!r}: only plain {{name}} placeholders are allowed, "
                    f"not {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}."
                )
        return {name for _, name, _, _ in fields if name}
    if isinstance(template, dict):
        return set().union(*(placeholders(v) for v in template.values()), set())
    if isinstance(template, list | tuple):
        return set().union(*(placeholders(v) for v in template), set())
    return set()


def render(template: Any, values: dict[str, Any], *, typed: bool) -> Any:
    """``template`` with every ``{name}`` replaced by ``values[name]``.

    Values are substituted as data: ``str.format`` with plain names only (no
    attribute or index lookups, so no value or template can reach into objects).
    With ``typed``, a string that is exactly ``"{name}"`` becomes the value itself
    (a number stays a number in a JSON body); otherwise values are text, JSON for
    lists and dicts.
    """
    if isinstance(template, str):
        placeholders(template)  # plain {name}s only
        fields = list(string.Formatter().parse(template))
        only = fields[0][1] if len(fields) == 1 and fields[0][0] == "" else None
        if typed and only:
            return values[only]
        out = []
        for literal, name, _, _ in fields:
            out.append(literal)
            if name is not None:
                out.append(as_text(values[name]))
        return "".join(out)
    if isinstance(template, dict):
        return {k: render(v, values, typed=typed) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render(v, values, typed=typed) for v in template]
    return template


def as_text(value: Any) -> str:
    """A value as one argument of a command line: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)
