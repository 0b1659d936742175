"""What every launcher shares: the :class:`Launcher` protocol, target URL schemes and
the values target templates may use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from sensors.runs.models import RunRecord
from triggers.errors import ConfigurationError

__all__ = [
    "REMOTE_FAMILIES",
    "Launcher",
    "Unbounded",
    "family_of",
    "scheme_of",
    "template_values",
]

_FAMILIES = {
    "local": "local",
    "command": "local",
    "http": "http",
    "https": "http",
    "k8s": "k8s",
    "argo": "argo",
    "prefect": "prefect",
    "airflow": "airflow",
    "dagster": "dagster",
    "flyte": "flyte",
}
REMOTE_FAMILIES = frozenset({"prefect", "airflow", "dagster", "flyte"})
"""The families whose runs another orchestrator runs, each attempt linked to its page there."""


class Launcher(Protocol):
    """Starts runs on one kind of target and keeps their phases up to date in the store.

    The launch stage starts a QUEUED run only once its launcher has a slot for it: it
    :meth:`reserve`-s one, claims the run (QUEUED -> RUNNING), then :meth:`launch`-es
    it, or :meth:`release`-s the slot when another worker claimed the run first.
    """

    def reserve(self) -> bool:
        """Take a slot for a run about to be claimed; False when there is none free."""

    def release(self) -> None:
        """Give back a slot that :meth:`reserve` took, for a run that was not launched."""

    def on_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever a slot frees, so that the next run starts at once."""

    async def launch(self, run: RunRecord) -> None:
        """Start ``run``, which the caller has just claimed (moved to RUNNING) after it
        reserved a slot. Returns once the run is started, not when it ends."""

    async def adopt(self) -> list[str]:
        """Take over this target's runs whose worker died; return their names."""

    async def close(self) -> None:
        """Stop watching; runs still going are ended as the target requires."""


class Unbounded:
    """The slots of a launcher whose capacity is the target's (a cluster, an HTTP service):
    always one free."""

    def reserve(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def on_room(self, callback: Callable[[], None]) -> None:
        pass


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme or url.rstrip(":/")


def family_of(url: str) -> str:
    """The launcher family of a target URL ('local' for local:// and command://).

    Raises:
        ConfigurationError: no launcher handles the URL's scheme.
    """
    family = _FAMILIES.get(scheme_of(url))
    if family is None:
        raise ConfigurationError(
            f"no launcher for target {url!r}; this version supports "
            f"{', '.join(s + '://' for s in _FAMILIES)}."
        )
    return family


def template_values(run: RunRecord) -> dict[str, Any]:
    """What a target's templates may use: the parameters and the run's context fields."""
    return {
        **run.parameters,
        "run_name": run.name,
        "project": run.project,
        "domain": run.domain,
        "flow": run.flow,
        "parameters": run.parameters,
        "events": run.events,
    }
