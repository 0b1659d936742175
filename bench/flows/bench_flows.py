"""Flows the benchmarks deploy."""

from triggers import trigger


@trigger(event="bench_tick")
def tick(n: int = 0, label: str = "") -> None:
    """Does nothing: the benchmark measures the engine, not the flow."""
