"""Flow parameters: their declared types, carried as data, and coercion of event values.

A flow's parameters are its function's keyword arguments. Engine workers never
import user code, so each annotation travels as a small JSON description
(:data:`TypeRef`) that the engine turns back into a type and validates with
pydantic. Only JSON-representable types are supported; anything else fails at
decoration with the list of what is.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any, Literal, Union

import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from triggers.error_text import exception_text, shown_value
from triggers.errors import DeclarationError, TriggerError

__all__ = ["ParamSpec", "ParameterSchema", "TypeRef", "describe_type", "rebuild_type"]

TypeRef = dict[str, Any]

_SCALARS: dict[Any, str] = {
    Any: "any",
    str: "str",
    int: "int",
    float: "float",
    bool: "bool",
    dict: "dict",
    list: "list",
    date: "date",
    datetime: "datetime",
    time: "time",
    timedelta: "timedelta",
    Decimal: "decimal",
    uuid.UUID: "uuid",
    type(None): "none",
}
_BY_NAME = {name: tp for tp, name in _SCALARS.items()}
SUPPORTED = "str, int, float, bool, date, datetime, time, timedelta, Decimal, UUID, Any, " + (
    "list[T], dict[str, T], Literal[...], and unions or Optional of these"
)


def describe_type(annotation: Any, *, where: str) -> TypeRef:
    """Describe a supported annotation as JSON data.

    Raises:
        DeclarationError: the type cannot be carried to the engine.
    """
    if annotation is inspect.Parameter.empty:
        return {"t": "any"}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0], where=where)
    if annotation in _SCALARS:
        return {"t": _SCALARS[annotation]}
    if origin in (list, tuple, set, frozenset) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise _unsupported(annotation, where)
        return {"t": "list", "of": [describe_type(args[0], where=where)]}
    if origin is dict and args:
        return {"t": "dict", "of": [describe_type(args[1], where=where)]}
    if origin in (Union, types.UnionType):
        return {"t": "union", "of": [describe_type(arg, where=where) for arg in args]}
    if origin is Literal and all(isinstance(v, str | int | bool) or v is None for v in args):
        return {"t": "literal", "values": list(args)}
    raise _unsupported(annotation, where)


def _unsupported(annotation: Any, where: str) -> DeclarationError:
    return DeclarationError(
        f"{where} is annotated {annotation!r}, which tripwire cannot carry in an event; "
        f"use one of: {SUPPORTED}."
    )


def rebuild_type(ref: TypeRef) -> Any:
    """Turn a :data:`TypeRef` back into an annotation pydantic can validate."""
    kind = ref["t"]
    if kind in _BY_NAME and "of" not in ref:  # bare list and dict are scalars too
        return _BY_NAME[kind]
    if kind == "list":
        return list[rebuild_type(ref["of"][0])]  # type: ignore[misc]  # built at runtime
    if kind == "dict":
        return dict[str, rebuild_type(ref["of"][0])]  # type: ignore[misc]  # built at runtime
    if kind == "union":
        return Union[tuple(rebuild_type(r) for r in ref["of"])]  # noqa: UP007  # runtime form
    if kind == "literal":
        return Literal[tuple(ref["values"])]
    raise TriggerError(f"unknown parameter type description {ref!r}; redeploy the flow")


class ParamSpec(BaseModel):
    """One flow parameter: name, type (as data), JSON default, and whether it is required."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    type: TypeRef
    required: bool
    default: Any = None

    @classmethod
    def of(cls, func: Callable[..., Any]) -> tuple[ParamSpec, ...]:
        """The parameter specs of a flow function (its keyword-passable arguments)."""
        try:
            hints = typing.get_type_hints(func, include_extras=True)
        except Exception as exc:
            raise DeclarationError(
                f"cannot resolve the flow's annotations ({exception_text(exc)}); "
                "import the types they name at the top of the file."
            ) from exc
        specs = []
        for param in inspect.signature(func).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise DeclarationError(
                    f"parameter {param.name!r} is {param.kind.description}; "
                    "flow parameters must be plain keyword-passable arguments."
                )
            annotation = hints.get(param.name, inspect.Parameter.empty)
            ref = describe_type(annotation, where=f"parameter {param.name!r}")
            required = param.default is inspect.Parameter.empty
            default = None
            if not required:
                try:
                    default = pydantic_core.to_jsonable_python(param.default)
                except pydantic_core.PydanticSerializationError as exc:
                    raise DeclarationError(
                        f"default of parameter {param.name!r} is not JSON ({exc}); give it "
                        "a default JSON can carry, e.g. a string, a number or None."
                    ) from exc
            specs.append(cls(name=param.name, type=ref, required=required, default=default))
        return tuple(specs)


@lru_cache(maxsize=4096)
def _adapter(type_ref: str) -> TypeAdapter[Any]:
    # Building an adapter takes about 0.2 ms; 100,000 sensors share a handful of types.
    return TypeAdapter(rebuild_type(json.loads(type_ref)))


_PASS_THROUGH: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


class ParameterSchema:
    """Validates and coerces event values into a flow's parameters."""

    def __init__(self, specs: tuple[ParamSpec, ...]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        # A value that already is the parameter's scalar type needs no validation; this
        # skips two pydantic calls per parameter on the engine's hot path.
        self._exact = {
            spec.name: _PASS_THROUGH[spec.type["t"]]
            for spec in specs
            if spec.type["t"] in _PASS_THROUGH and len(spec.type) == 1
        }

    @cached_property
    def _adapters(self) -> dict[str, TypeAdapter[Any]]:
        return {
            name: _adapter(json.dumps(s.type, sort_keys=True)) for name, s in self.specs.items()
        }

    def coerce(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Return the effective parameters (defaults, then coerced values) as JSON data.

        Raises:
            TriggerError: a value does not fit its parameter's type, or a required
                parameter got no value; the message names each problem and the fix.
        """
        result: dict[str, Any] = {}
        problems: list[str] = []
        exact = self._exact
        for name, spec in self.specs.items():
            if name in exact and type(values.get(name)) is exact[name]:
                result[name] = values[name]
                continue
            if name not in values:
                if spec.required:
                    problems.append(
                        f"parameter {name!r} is required but nothing filled it; add the "
                        "field to the event or give the parameter a default"
                    )
                else:
                    result[name] = spec.default
                continue
            adapter = self._adapters[name]
            try:
                result[name] = adapter.dump_python(
                    adapter.validate_python(values[name]), mode="json"
                )
            except ValidationError as exc:
                reason = "; ".join(err["msg"] for err in exc.errors())
                problems.append(
                    f"parameter {name!r} expects {_type_text(spec.type)}, got "
                    f"{shown_value(values[name])}: {reason}"
                )
        if problems:
            raise TriggerError("; ".join(problems))
        return result


def _type_text(ref: TypeRef) -> str:
    kind = ref["t"]
    if kind in ("list", "dict", "union"):
        inner = ", ".join(_type_text(r) for r in ref["of"])
        return (
            f"{kind}[{inner}]" if kind != "union" else " | ".join(_type_text(r) for r in ref["of"])
        )
    if kind == "literal":
        return f"one of {json.dumps(ref['values'], default=str)}"
    return str(kind)
