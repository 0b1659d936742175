"""Hypothesis strategies for what users hand tripwire: events (names, payloads, records as
they sit on the topic) and trigger declarations (valid, and wrong in the ways people are)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from triggers.envelope import encode, make_envelope

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
event_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-:/@+]{0,30}", fullmatch=True)


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes | None, tuple[tuple[str, bytes | None], ...]]:
    """A record of the events topic: a real event, one with a header changed or dropped,
    or bytes that were never an event."""
    envelope, _ = make_envelope(draw(event_names), draw(payloads))
    record = encode(envelope)
    headers = list(record.headers)
    change = draw(st.sampled_from(["none", "drop", "replace", "value", "garbage"]))
    if change == "drop" and headers:
        headers.pop(draw(st.integers(0, len(headers) - 1)))
    elif change == "replace" and headers:
        at = draw(st.integers(0, len(headers) - 1))
        # Kafka lets a header have no value at all (null), whatever the binding says.
        headers[at] = (headers[at][0], draw(st.binary(max_size=20) | st.none()))
    value: bytes | None = record.value
    if change == "value":
        value = draw(st.binary(max_size=60) | st.none())
    elif change == "garbage":
        headers = draw(st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=12))))
        value = draw(st.binary(max_size=60))
    return value, tuple(headers)


_deps = st.lists(st.sampled_from(["a", "b", "c", "orders.*", "bad name", ""]), max_size=4)
_durations = st.sampled_from(["1h", "90s", "10m", "5s", "0s", "-1h", "soon", 60, 0.5, None])
_paths = st.sampled_from(["$.k", "k", "$.a[0].b", "$..x", "$.a * $.b", "$[", "", "$.k.*"])
_filters = st.lists(
    st.sampled_from(["$.amount >= 100", "$.x == 'y'", "$.n exists", "amount > 5", "$.a ~ b", ""]),
    max_size=3,
)


@st.composite
def declarations(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments for ``@trigger``: some right, many wrong."""
    kind = draw(st.sampled_from(["event", "events", "sequence", "absent", "two", "none"]))
    names = draw(_deps)
    kwargs: dict[str, Any] = {}
    if kind == "event":
        kwargs["event"] = names[0] if names else draw(st.text(max_size=10))
    elif kind in ("events", "sequence"):
        deps: list[Any] = list(names)
        if draw(st.booleans()) and names:
            deps[0] = {"name": names[0], "filters": draw(_filters)}
        kwargs[kind] = deps
    elif kind == "absent":
        kwargs["absent"] = names[0] if names else "x"
    elif kind == "two":
        kwargs.update(event="a", events=["b"])
    for option, values in {
        "within": _durations,
        "debounce": _durations,
        "correlate_by": _paths,
        "conditions": st.sampled_from(["a && b", "a || (b && c)", "a &&", "(((a)))", "z"]),
        "threshold": st.sampled_from([1, 2, 5, 0, -1, True, "3"]),
        "tz": st.sampled_from(["UTC", "Europe/Berlin", "Mars/Olympus"]),
        "rate_limit": st.sampled_from(["10/m", "1/s", "ten", "0/m"]),
        "max_concurrency": st.sampled_from([1, 4, 0, -2]),
        "retries": st.sampled_from([0, 3, 101, -1]),
    }.items():
        if draw(st.integers(0, 4)) == 0:
            kwargs[option] = draw(values)
    return kwargs
