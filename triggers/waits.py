"""What a wait for a signal is, and where the SDK finds waits.

A run that calls ``wait_for_event`` waits: a :class:`Signal`, RUNNING until it is
signalled, times out, or its run ends. The values a signal carries are typed
(``check_value``, ``parse_value``). The SDK reaches waits through a
:class:`SignalBackend`: the HTTP API, or the run store that the engine provides.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol, Self, cast

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

__all__ = [
    "EXAMPLES",
    "SIGNAL_TYPES",
    "Signal",
    "SignalBackend",
    "SignalPhase",
    "UtcDatetime",
    "check_value",
    "parse_value",
]

SIGNAL_TYPES: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}
EXAMPLES = {"bool": "true", "int": "42", "float": "0.5", "str": "approved"}

UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(UTC))]
"""A timezone-aware datetime, normalised to UTC: a naive one is rejected, not guessed at."""


class SignalPhase(StrEnum):
    """Where a wait is: RUNNING until it is signalled, times out, or its run ends."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"
    FAILED = "FAILED"


class Signal(BaseModel):
    """One event a run waits for, or waited for."""

    project: str
    domain: str
    run_name: str
    action_name: str | None = Field(None, description="Which part of the run waits; optional.")
    name: str
    expected_type: str = Field(description="bool, int, float or str.")
    phase: SignalPhase
    value: bool | int | float | str | None = Field(
        None, description="The signalled value, once SUCCEEDED."
    )
    created_at: UtcDatetime = Field(description="When the run started waiting.")
    updated_at: UtcDatetime
    timeout_at: UtcDatetime | None = Field(None, description="When the wait gives up.")
    signalled_at: UtcDatetime | None = None


def check_value(expected_type: str, value: Any, *, what: str) -> bool | int | float | str:
    """``value`` if it is a ``expected_type``; an int is a float too.

    Raises:
        TypeError: not a bool, int, float or str, or not the expected one.
    """
    if type(value) not in (bool, int, float, str):
        raise TypeError(
            f"{what}: a signal is a bool, int, float or str, not {type(value).__name__}"
        )
    if expected_type == "float" and type(value) is int:
        return float(value)
    if type(value) is not SIGNAL_TYPES[expected_type]:
        raise TypeError(f"{what} expects a {expected_type}, not {type(value).__name__} {value!r}")
    return cast(bool | int | float | str, value)


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def parse_value(text: str, expected_type: str) -> bool | int | float | str:
    """A signal value typed as text (CLI, web form) as ``expected_type``.

    Raises:
        ValueError: the text is not one; the message gives an example.
    """
    try:
        if expected_type == "bool":
            if text.strip().lower() in _TRUE + _FALSE:
                return text.strip().lower() in _TRUE
            raise ValueError(text)
        if expected_type == "int":
            return int(text)
        if expected_type == "float":
            return float(text)
    except ValueError:
        raise ValueError(
            f"expects a {expected_type}, and {text!r} is not one; e.g. {EXAMPLES[expected_type]}"
        ) from None
    return text


class SignalBackend(Protocol):
    """Where ``Event`` and ``wait_for_event`` find waits: used as ``async with backend:``.

    A wait is named by its run (``project``, ``domain``, ``run_name``), the event's
    ``name`` and, when a part of the run named itself, ``action_name``. Every method
    raises what the run store would: ``SignalError`` and its kinds, ``TypeError`` for
    a value or type that does not fit, ``StoreError`` when run state is out of reach.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def get_signal(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        action_name: str | None = None,
    ) -> Signal | None:
        """The wait for ``name`` in the run, or None if the run never waited for it."""
        ...

    async def list_signals(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        action_name: str | None = None,
        limit: int = 100,
    ) -> list[Signal]:
        """The run's waits (of one action, if given), oldest first."""
        ...

    async def give_signal(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        value: Any,
        action_name: str | None = None,
    ) -> Signal:
        """Signal ``value`` to the run waiting for ``name``; return the signalled wait."""
        ...

    async def wait_started(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        expected_type: str,
        timeout_at: datetime | None,
        action_name: str | None = None,
    ) -> Signal:
        """Record that the run waits for ``name``; return the wait as it now stands."""
        ...

    async def time_out(
        self,
        *,
        project: str,
        domain: str,
        run_name: str,
        name: str,
        action_name: str | None = None,
    ) -> Signal:
        """End the wait as TIMED_OUT if it still runs; return it as it now stands."""
        ...
