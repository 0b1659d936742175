"""An Argo ``http`` trigger as an ``http(s)://`` target.

- The body is built as Argo builds it: each ``payload`` parameter sets its ``dest`` (a path
  of keys) to the value as text, or as raw JSON with ``useRawData``. Text parameters are
  typed ``str``: a number where Argo would send its text is a trigger failure, shown in
  ``tripwire sensors status``, rather than a number sent as a number.
- ``headers`` and ``dynamicHeaders`` become headers; ``host`` the ``Host`` header.
- Argo counts any answer as done unless ``policy.status.allow`` lists the good statuses;
  so does ``success`` here. ``timeout`` defaults to Argo's 60 s. Argo calls once unless
  ``retryStrategy`` says more: ``steps`` tries become ``retries``.
- Secrets (``secureHeaders``, ``basicAuth``), ``tls`` and ``parameters`` that rewrite the
  trigger are refused; methods other than POST and PUT too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sensors.interop.argo_params import bind, escape
from sensors.interop.argo_resources import TargetPlan, TargetReader, mapping, text
from sensors.interop.findings import Untranslatable
from sensors.interop.pysource import Code
from triggers.errors import DeclarationError

__all__ = ["http_target"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_KEYS = ("url", "method", "payload", "headers", "dynamicHeaders", "timeout", "host")


def http_target(reader: TargetReader, spec: dict[str, Any], where: str) -> TargetPlan:
    """The ``http(s)://`` target of an http action.

    Raises:
        Untranslatable: secrets, TLS settings, rewriting parameters or another method.
    """
    reader.only(
        spec,
        _KEYS,
        where,
        "secrets, TLS settings and parameters that rewrite the trigger are not carried over "
        "(a tripwire target can sign its body with hmac_secret_env)",
    )
    url = str(spec.get("url") or "")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise DeclarationError(f"{where}.url {url!r} is not an http(s) URL.")
    method = spec.get("method") or "POST"
    if method not in ("POST", "PUT"):
        raise Untranslatable(f"{where}.method {method}: tripwire's http target sends POST or PUT")
    plan = TargetPlan(url=url)
    body: dict[str, Any] = {}
    for dest, here, source in reader.sources(spec.get("payload"), f"{where}.payload"):
        if not dest:
            raise Untranslatable(f"{here} has no dest: Argo sends its value as the whole body")
        keys = dest.split(".")
        if not all(_KEY.fullmatch(key) for key in keys):
            raise Untranslatable(f"{here}.dest {dest!r} is not a path of plain keys")
        annotation = "Any" if source.raw else "str"
        binding = bind(
            source, reader.context, None, annotation=annotation, where=here, name=keys[-1]
        )
        _put(body, keys, binding.template(), here)
        plan.add(binding)
    if not spec.get("payload"):
        reader.note("differs", where, "Argo sends an empty body; tripwire sends {}")
    written = mapping(spec.get("headers"), f"{where}.headers")
    headers = {str(k): escape(text(v)) for k, v in written.items()}
    if spec.get("host"):
        headers["Host"] = escape(str(spec["host"]))
    for dest, here, source in reader.sources(spec.get("dynamicHeaders"), f"{where}.dynamicHeaders"):
        binding = bind(source, reader.context, None, annotation="Any", where=here)
        headers[dest] = binding.template()
        plan.add(binding)
    timeout = spec.get("timeout") or 60
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise DeclarationError(
            f"{where}.timeout is {timeout!r}; Argo takes a whole number of seconds (timeout: 30)."
        )
    plan.options = {"method": method, "body": body, "timeout": f"{timeout}s"}
    if headers:
        plan.options["headers"] = headers
    allowed = _allowed(reader)
    plan.options["success"] = allowed or Code("list(range(100, 600))")
    _retries(reader, plan, where)
    return plan


def _allowed(reader: TargetReader) -> list[int]:
    """The statuses ``policy.status.allow`` counts as done (none: any)."""
    where = f"{reader.where}.policy"
    status = mapping(mapping(reader.trigger.get("policy"), where).get("status"), f"{where}.status")
    allowed = status.get("allow")
    if allowed is None:
        return []
    if not isinstance(allowed, list) or not all(
        isinstance(code, int) and not isinstance(code, bool) for code in allowed
    ):
        raise DeclarationError(
            f"{where}.status.allow is {allowed!r}; Argo takes a list of HTTP statuses as "
            "numbers (allow: [200, 201])."
        )
    return allowed


def _retries(reader: TargetReader, plan: TargetPlan, where: str) -> None:
    strategy = reader.trigger.get("retryStrategy")
    if strategy is None:
        plan.options["retries"] = 0
        return
    strategy = mapping(strategy, f"{reader.where}.retryStrategy")
    steps = strategy.get("steps") or 5  # Argo's default when the strategy gives none
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise DeclarationError(
            f"{reader.where}.retryStrategy.steps is {steps!r}; Argo takes a whole number of "
            "tries (steps: 3)."
        )
    plan.options["retries"] = plan.policy["retries"] = max(steps - 1, 0)
    plan.options["backoff"] = f"{_seconds(strategy.get('duration', '1s'), where):g}s"
    reader.note(
        "differs",
        f"{where} retryStrategy",
        "tripwire doubles the wait after each try, with jitter, where Argo multiplies it by "
        "factor (1 by default)",
    )


def _put(body: dict[str, Any], keys: list[str], value: str, where: str) -> None:
    node = body
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise Untranslatable(f"{where}: {'.'.join(keys)} is inside another payload value")
    if keys[-1] in node:
        raise Untranslatable(f"{where}: {'.'.join(keys)} holds another payload value")
    node[keys[-1]] = value


def _seconds(raw: object, where: str) -> float:
    """A Go duration ('1s', '1m30s') or a number of nanoseconds, in seconds."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        seconds = raw / 1e9
    else:
        parts = _GO_DURATION.findall(str(raw))
        if not parts or "".join(n + u for n, u in parts) != str(raw):
            raise DeclarationError(f"{where} retryStrategy.duration {raw!r} is not a Go duration.")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0.001:
        raise Untranslatable(f"{where} retries without waiting; tripwire waits at least 1ms")
    return seconds
