"""Launch targets, chosen by the URL scheme of a flow's ``target`` (:mod:`triggers.targets`).

Each launcher implements :class:`Launcher`. ``local://`` and ``command://`` run
processes on the worker's machine (:mod:`sensors.launchers.local`);
``http(s)://`` calls a web hook (:mod:`sensors.launchers.http`); ``k8s://`` and
``argo://`` create Jobs and Workflows (:mod:`sensors.launchers.kubernetes`,
:mod:`sensors.launchers.argo`); ``prefect://``, ``airflow://``, ``dagster://``
and ``flyte://`` start runs on those orchestrators (a module of that name each).
All the remote ones share :mod:`sensors.launchers.remote`. A worker keeps one
launcher per family, so the two process targets share their slots.
"""

from __future__ import annotations

import importlib

from sensors.launchers.base import Launcher, family_of
from sensors.runs.store import RunStore
from triggers.settings import Settings

__all__ = ["by_url"]

_ORCHESTRATORS = {  # imported when a worker first meets the family
    "prefect": ("sensors.launchers.prefect", "PrefectLauncher"),
    "airflow": ("sensors.launchers.airflow", "AirflowLauncher"),
    "dagster": ("sensors.launchers.dagster", "DagsterLauncher"),
    "flyte": ("sensors.launchers.flyte", "FlyteLauncher"),
}


def by_url(url: str, *, settings: Settings, store: RunStore) -> Launcher:
    """A new launcher for a target URL such as ``local://``.

    Raises:
        ConfigurationError: no launcher handles the URL's scheme.
    """
    family = family_of(url)
    if family == "http":
        from sensors.launchers.http import HttpLauncher

        return HttpLauncher(settings=settings, store=store)
    if family == "k8s":
        from sensors.launchers.kubernetes import KubernetesLauncher

        return KubernetesLauncher(settings=settings, store=store)
    if family == "argo":
        from sensors.launchers.argo import ArgoLauncher

        return ArgoLauncher(settings=settings, store=store)
    if family in _ORCHESTRATORS:
        module, name = _ORCHESTRATORS[family]
        launcher: Launcher = getattr(importlib.import_module(module), name)(
            settings=settings, store=store
        )
        return launcher
    from sensors.launchers.local import LocalLauncher

    return LocalLauncher(settings=settings, store=store)
