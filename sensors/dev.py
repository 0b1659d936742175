"""``tripwire dev``: the whole engine on one machine, with nothing to install.

It starts the embedded broker, one worker (sensor and launcher stages), the
HTTP API with its web page, and a SQLite store under ``$TRIPWIRE_HOME``, and
records the broker's and the API's addresses and a local API token in
``$TRIPWIRE_HOME/dev.json`` so that ``publish()`` and the CLI in another
terminal find them. The file is removed on exit.

A flow file that fails to import leaves the others served: it is reported, and recorded
for the web page and ``tripwire sensors list``. While it runs, edits of the flow files are
followed (:mod:`sensors.reloader`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from sensors.api import ApiServer
from sensors.api.auth import new_token
from sensors.broker import EmbeddedBroker
from sensors.engine import Engine
from sensors.launchers.process import pid_alive
from sensors.reloader import FlowReloader, load_tracked
from sensors.runs.import_problems import ImportProblem
from sensors.runs.outages import shown_url
from sensors.stages.kafka import awaiting
from triggers.errors import ConfigurationError
from triggers.settings import Settings, read_dev_file
from triggers.spec import FlowSpec

__all__ = ["DevInfo", "run_dev", "serve", "serve_until_signal"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevInfo:
    """What a started dev engine tells its user."""

    bootstrap: str
    store_url: str
    api_url: str
    api_token: str
    home: Path
    flows: tuple[FlowSpec, ...]
    startup_seconds: float
    problems: tuple[ImportProblem, ...] = ()
    """The flow files left out because they failed to import."""
    busy_port: int | None = None
    """The API port asked for, when it was taken (``api_url`` has the one used)."""


async def serve(engine: Engine, *, beside: Coroutine[Any, Any, None] | None = None) -> None:
    """Run ``engine`` until SIGINT or SIGTERM (Ctrl-C stops cleanly, not with a traceback),
    and ``beside`` with it. SIGUSR1 logs where each of its tasks waits, for a worker that
    seems stuck."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, engine.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, log_tasks)
    companion = None if beside is None else asyncio.create_task(beside, name="tripwire dev reload")
    try:
        await engine.run_forever()
    finally:
        if companion is not None:
            companion.cancel()
            await asyncio.gather(companion, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            loop.remove_signal_handler(sig)


def log_tasks() -> None:
    """Log every task of the running loop with its chain of awaits (``kill -USR1 PID``)."""
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    lines = "".join(f"\n  {task.get_name()}: {awaiting(task)}" for task in tasks)
    log.warning("%d tasks, and where each waits (SIGUSR1):%s", len(tasks), lines)


async def serve_until_signal(
    running: Coroutine[Any, Any, None], stop: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Await ``running`` until it ends, or SIGINT or SIGTERM; then await ``stop()``."""
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)
    task = asyncio.ensure_future(running)
    try:
        await asyncio.wait(
            [task, asyncio.ensure_future(signalled.wait())], return_when="FIRST_COMPLETED"
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stop()
        await task


async def run_dev(
    paths: Sequence[str | Path],
    settings: Settings,
    *,
    on_ready: Callable[[DevInfo], None] | None = None,
    say: Callable[[str, str], None] = lambda what, text: print(what, text),
    any_port_if_taken: bool = True,
) -> None:
    """Load the flows under ``paths``, start broker, engine and store, and serve until
    stopped, following edits of the files; ``say(what, text)`` tells each reload.

    Raises:
        DeclarationError: a path does not exist (before anything starts).
        ConfigurationError: another ``tripwire dev`` uses the same home, or the API port
            is taken and ``any_port_if_taken`` is false.
        BrokerError: the embedded broker did not start.
    """
    started = asyncio.get_running_loop().time()
    loaded = load_tracked(paths)
    found = loaded[0]
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    _refuse_second_dev(home)
    broker = EmbeddedBroker(log_path=home / "broker.log")
    await asyncio.to_thread(broker.start)
    try:
        # A token of this run's own unless one is configured: printed, and kept in dev.json.
        token = settings.api_token or SecretStr(new_token())
        dev_settings = settings.model_copy(
            update={"kafka_bootstrap": broker.bootstrap, "home": home, "api_token": token}
        )
        api = ApiServer(dev_settings, any_port_if_taken=any_port_if_taken)
        engine = Engine(dev_settings, found.flows, sources=found.sources, prune=True)
        async with engine:
            await engine.wait_ready()
            assert engine.store is not None
            reloader = FlowReloader(
                paths,
                dev_settings,
                engine.store,
                loaded,
                serve=engine.follow_deployments,
                code_changed=engine.code_changed,
                say=say,
            )
            await reloader.record()
            dev_settings.api_url = await api.start()
            _write_dev_file(dev_settings, broker)
            try:
                if on_ready is not None:
                    on_ready(
                        DevInfo(
                            bootstrap=broker.bootstrap,
                            store_url=shown_url(dev_settings.store_url),
                            api_url=dev_settings.api_url,
                            api_token=token.get_secret_value(),
                            home=home,
                            flows=tuple(found.flows),
                            startup_seconds=asyncio.get_running_loop().time() - started,
                            problems=tuple(found.problems),
                            busy_port=api.busy_port,
                        )
                    )
                await serve(engine, beside=reloader.watch())
            finally:
                dev_settings.dev_file.unlink(missing_ok=True)
                await api.stop()
    finally:
        await asyncio.to_thread(broker.stop)


def _refuse_second_dev(home: Path) -> None:
    info = read_dev_file(home)
    if not info:
        return
    pid = info.get("pid")
    if isinstance(pid, int) and pid_alive(pid):
        raise ConfigurationError(
            f"another `tripwire dev` (pid {pid}) is using {home}; stop it, or set "
            "TRIPWIRE_HOME to another folder to run a second one."
        )
    (home / "dev.json").unlink(missing_ok=True)  # left behind by a killed dev


def _write_dev_file(settings: Settings, broker: EmbeddedBroker) -> None:
    info = {
        "kafka_bootstrap": broker.bootstrap,
        "database_url": settings.store_url,
        "api_url": settings.api_url,
        "api_token": settings.api_token.get_secret_value() if settings.api_token else None,
        "pid": os.getpid(),
        "broker_pid": broker.pid,
        "started_at": datetime.now(UTC).isoformat(),
    }
    tmp = settings.dev_file.with_suffix(".tmp")
    tmp.touch(mode=0o600)  # it holds the API token: for this user only
    tmp.write_text(json.dumps(info, indent=2))
    tmp.replace(settings.dev_file)
