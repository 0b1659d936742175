"""What every launcher shares: the :class:`Launcher` protocol, target URL schemes and
the values target templates may use."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from sensors.runs.models import RunRecord
from triggers.errors import ConfigurationError

__all__ = ["Launcher", "family_of", "scheme_of", "template_values"]

_FAMILIES = {
    "local": "local",
    "command": "local",
    "http": "http",
    "https": "http",
    "k8s": "k8s",
    "argo": "argo",
}


class Launcher(Protocol):
    """Starts runs on one kind of target and keeps their phases up to date in the store."""

    async def launch(self, run: RunRecord) -> None:
        """Start ``run``, which the caller has just claimed (moved to RUNNING)."""

    async def adopt(self) -> list[str]:
        """Take over this target's runs whose worker died; return their names."""

    async def close(self) -> None:
        """Stop watching; runs still going are ended as the target requires."""


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
