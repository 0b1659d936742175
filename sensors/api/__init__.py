"""The HTTP API and web page (FastAPI), served by ``tripwire api`` and inside ``tripwire dev``.

:class:`ApiServer` runs the app with uvicorn on the caller's event loop, next
to an engine or alone; :func:`create_app` builds it (see :mod:`sensors.api.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from sensors.api.app import create_app
from sensors.api.live import close_streams
from triggers.errors import ConfigurationError
from triggers.settings import Settings

__all__ = ["ApiServer", "create_app"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the process that embeds us handles SIGINT and SIGTERM


class ApiServer:
    """The API on ``settings.api_host:api_port``, started and stopped on the caller's loop."""

    def __init__(self, settings: Settings, *, any_port_if_taken: bool = False) -> None:
        self._settings = settings
        self._any_port = any_port_if_taken
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._app: FastAPI | None = None
        self.url = ""
        self.busy_port: int | None = None
        """The port asked for, when it was taken and any free one was used instead."""

    async def start(self) -> str:
        """Listen and connect; return the base URL.

        Raises:
            ConfigurationError: the port is taken, or the app could not start (its
                store is unreachable); the message says which.
        """
        sock = self._bind()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self._app = create_app(self._settings)
        config = uvicorn.Config(self._app, lifespan="on", log_level="warning", access_log=False)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="tripwire api")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ConfigurationError(
                    f"the API at {self.url} did not start; see the log above for why"
                )
            await asyncio.sleep(0.02)
        log.info("API listening on %s", self.url)
        return self.url

    def _bind(self) -> socket.socket:
        host, port = self._settings.api_host, self._settings.api_port
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or not self._any_port:
                sock.close()
                raise ConfigurationError(
                    f"the API cannot listen on {host}:{port}: {exc.strerror}; choose a free "
                    "port with --port (0: any), or TRIPWIRE_API_PORT"
                ) from None
            self.busy_port = port
            sock.bind((host, 0))
        sock.set_inheritable(True)
        return sock

    async def wait(self) -> None:
        """Until the server stops."""
        if self._task is not None:
            await self._task

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        if self._app is not None:
            close_streams(self._app)  # uvicorn would wait for the open /live streams to end
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 10)
