"""Launch targets, chosen by the URL scheme of a flow's ``target``.

Each launcher implements :class:`Launcher`. Only ``local://`` ships today;
``k8s://``, ``argo://``, ``http(s)://`` and ``command://`` plug in here by
scheme (their optional dependencies are imported lazily by their modules).
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from sensors.runs.models import RunRecord
from sensors.runs.store import RunStore
from triggers.errors import ConfigurationError
from triggers.settings import Settings

__all__ = ["Launcher", "by_url", "scheme_of"]


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


def by_url(url: str, *, settings: Settings, store: RunStore) -> Launcher:
    """The launcher for a target URL such as ``local://``.

    Raises:
        ConfigurationError: no launcher handles the URL's scheme.
    """
    scheme = scheme_of(url)
    if scheme == "local":
        from sensors.launchers.local import LocalLauncher

        return LocalLauncher(settings=settings, store=store)
    raise ConfigurationError(f"no launcher for target {url!r}; this version supports 'local://'.")
