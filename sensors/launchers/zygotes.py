"""Warm starts for local runs: a zygote (``python -m triggers.zygote``) per flow module and
revision, which has imported the SDK and the module once and forks each run process.

:class:`Zygotes` keeps one per flow module and revision (flows of one file share it)
and starts it on the first run; a new revision gets a new one, and the old one is
closed. A zygote that died is started again on the next run. A flow whose module
cannot be forked safely (it starts a thread at import) is started cold, with a warning
saying why. The worker is
never the one that forks: it is multi-threaded and runs an event loop, the zygote
neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensors.launchers.process import wait_pid

__all__ = ["Unsafe", "WarmProcess", "Zygote", "Zygotes"]

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 60.0  # seconds for a zygote to import its flow's module


class Unsafe(Exception):
    """Raised when a flow's module cannot be forked safely; its runs start cold."""


@dataclass
class WarmProcess:
    """A run process a zygote forked: its pid, and its exit code once it ended (None when
    the zygote died first and nobody could read it)."""

    pid: int
    ended: asyncio.Future[int | None] = field(repr=False)

    async def wait(self) -> int | None:
        return await asyncio.shield(self.ended)


class Zygote:
    """One zygote process and the conversation with it."""

    def __init__(self, process: asyncio.subprocess.Process, key: str) -> None:
        self.process = process
        self.key = key
        self._next = 0
        self._forks: dict[int, asyncio.Future[int]] = {}
        self._ended: dict[int, asyncio.Future[int | None]] = {}
        self._early: dict[int, int] = {}  # exits reported before their fork's answer
        self.users = 0  # forks handed this zygote and not answered yet
        self._watches: set[asyncio.Future[None]] = set()  # children of a dead zygote
        self._reader = asyncio.create_task(self._read(), name=f"zygote {process.pid}")

    @classmethod
    async def start(cls, entrypoint: dict[str, Any], key: str, log_path: Path) -> Zygote:
        """Start a zygote for ``entrypoint`` and wait until it imported the flow's module.

        Raises:
            Unsafe: the module cannot be forked safely, or did not import.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as errors:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "triggers.zygote",
                json.dumps(entrypoint),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=errors,
                start_new_session=True,  # a Ctrl-C in the worker's terminal is not its
            )
        assert process.stdout is not None
        try:
            first = await asyncio.wait_for(process.stdout.readline(), _STARTUP_TIMEOUT)
            answer = json.loads(first or b"{}")
        except (TimeoutError, ValueError) as exc:
            process.kill()
            await process.wait()
            raise Unsafe(f"its zygote did not start ({exc or 'timed out'})") from None
        if "ready" not in answer:
            await process.wait()
            raise Unsafe(str(answer.get("unsafe") or f"its zygote exited ({first!r})"))
        return cls(process, key)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self._reader.done()

    @property
    def forking(self) -> bool:
        """Whether a run was handed this zygote and its fork is not answered yet."""
        return self.users > 0

    async def fork(
        self, *, context: Path, result: Path, log: Path, cwd: Path, env: dict[str, str]
    ) -> WarmProcess:
        """Have the zygote fork a run process; return it once it runs.

        Raises:
            ConnectionError: the zygote is gone (the caller starts another).
        """
        stdin = self.process.stdin
        if stdin is None or not self.alive:
            raise ConnectionError("the zygote is gone")
        self._next += 1
        number = self._next
        request = {
            "id": number,
            "context": str(context),
            "result": str(result),
            "log": str(log),
            "cwd": str(cwd),
            "env": env,
        }
        forked = self._forks[number] = asyncio.get_running_loop().create_future()
        stdin.write(json.dumps(request).encode() + b"\n")
        try:
            await stdin.drain()
            pid = await forked
        except (ConnectionError, OSError) as exc:
            raise ConnectionError(f"the zygote is gone: {exc}") from exc
        finally:
            self._forks.pop(number, None)
        ended = self._ended[pid] = asyncio.get_running_loop().create_future()
        if pid in self._early:
            ended.set_result(self._early.pop(pid))
        return WarmProcess(pid, ended)

    async def close(self) -> None:
        """End the zygote (its stdin closes); the runs it forked go on."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await asyncio.wait_for(self.process.wait(), 5)
        if self.process.returncode is None:
            self.process.kill()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while line := await stdout.readline():
                message = json.loads(line)
                if "pid" in message:
                    forked = self._forks.get(message["id"])
                    if forked is not None and not forked.done():
                        forked.set_result(message["pid"])
                elif "exited" in message:
                    ended = self._ended.pop(message["exited"], None)
                    if ended is None:
                        self._early[message["exited"]] = message["code"]
                    elif not ended.done():
                        ended.set_result(message["code"])
        finally:
            self._orphaned()

    def _orphaned(self) -> None:
        """The zygote is gone: forks it did not answer fail; its children, which live on
        without it, are watched by pid, their exit codes lost."""
        for forked in self._forks.values():
            if not forked.done():
                forked.set_exception(ConnectionError("the zygote died"))
        for pid, ended in self._ended.items():
            if not ended.done():
                self._watches.add(asyncio.ensure_future(_unknown_end(pid, ended)))
        self._ended = {}


async def _unknown_end(pid: int, ended: asyncio.Future[int | None]) -> None:
    """Resolve ``ended`` with None once ``pid``, a child of a dead zygote, is gone."""
    await wait_pid(pid)
    if not ended.done():
        ended.set_result(None)


class Zygotes:
    """The zygotes of one launcher, one per flow module and revision, at most ``warm`` of
    them: each holds its module's imports in memory, so the least recently used one that is
    not forking ends when another needs room (its runs go on; its next run starts a new
    one)."""

    def __init__(self, logs: Path, warm: int = 8) -> None:
        self._logs = logs
        self._warm = warm
        # a flow module -> the zygote of its revision, least recently used first
        self._by_flow: dict[str, Zygote] = {}
        self._starting: dict[str, asyncio.Lock] = {}
        self._cold: dict[str, str] = {}  # key -> why its runs start cold
        self._generation = 0  # moves on when code the flows import changed (renew)

    async def fork(
        self, entrypoint: dict[str, Any], revision: int, *, retry: bool = True, **request: Any
    ) -> WarmProcess | None:
        """Fork a run of ``entrypoint`` at ``revision`` from its zygote; None when runs of
        this revision start cold (a warning says why, once).

        Flows of one module share its zygote (the module is what it imports), per revision
        and per version of the module's file: an edit of a flow's code that changes none of
        its declarations keeps the revision, and must still reach the next run.
        """
        flow = json.dumps({k: v for k, v in entrypoint.items() if k != "function"}, sort_keys=True)
        key = f"{flow}@{revision}@{_modified(entrypoint)}@{self._generation}"
        if key in self._cold:
            return None
        lock = self._starting.setdefault(flow, asyncio.Lock())
        async with lock:
            zygote = self._by_flow.get(flow)
            if zygote is None or zygote.key != key or not zygote.alive:
                if zygote is not None:
                    await zygote.close()  # a new revision, or a dead one
                    self._by_flow.pop(flow, None)
                await self._make_room()
                try:
                    zygote = await Zygote.start(entrypoint, key, self._logs / "zygotes.log")
                except Unsafe as exc:
                    self._by_flow.pop(flow, None)
                    self._start_cold(key, entrypoint, str(exc))
                    return None
                self._by_flow[flow] = zygote
            self._by_flow[flow] = self._by_flow.pop(flow)  # the most recently used now
            zygote.users += 1  # before the lock goes: not ended to make room meanwhile
        try:
            return await zygote.fork(**request)
        except ConnectionError:
            # It died between runs (killed, out of memory): start another, once.
            async with lock:
                if self._by_flow.get(flow) is zygote:
                    self._by_flow.pop(flow)
            if not retry:
                # Its zygotes die as they fork (the module's own fork hooks, the memory
                # limit): the runs of this revision start cold from now on.
                self._start_cold(
                    key,
                    entrypoint,
                    "its zygote died twice while forking a run, which fails as a SYSTEM error "
                    "and is retried",
                )
                raise
            return await self.fork(entrypoint, revision, retry=False, **request)
        finally:
            zygote.users -= 1

    def _start_cold(self, key: str, entrypoint: dict[str, Any], reason: str) -> None:
        """From now on, runs of ``key`` (a flow module at a revision) start cold; say why."""
        self._cold[key] = reason
        log.warning(
            "runs of %s start cold (a new interpreter each), not forked from a warm parent: %s",
            entrypoint.get("path") or entrypoint.get("module"),
            reason,
        )

    async def _make_room(self) -> None:
        """End the least recently used idle zygotes beyond ``warm - 1``."""
        for flow, zygote in list(self._by_flow.items()):
            if len(self._by_flow) < self._warm:
                return
            if not zygote.forking:
                del self._by_flow[flow]
                await zygote.close()

    @property
    def warm(self) -> int:
        """How many zygotes there are now."""
        return len(self._by_flow)

    def renew(self) -> None:
        """The code the flows import changed (a helper module, not only their own file): each
        flow's next run starts a new zygote, which imports it afresh; the old one then ends."""
        self._generation += 1

    async def close(self) -> None:
        for zygote in self._by_flow.values():
            await zygote.close()
        self._by_flow = {}


def _modified(entrypoint: dict[str, Any]) -> int:
    """When the flow's file last changed (ns), or 0 for a module imported by name."""
    path = entrypoint.get("path")
    try:
        return Path(path).stat().st_mtime_ns if path else 0
    except OSError:
        return 0  # gone: the zygote's start says so
