"""Group commit: writes that callers make one at a time, made together in one transaction.

A transaction costs about as much as its statements whatever rows they write, and on
SQLite one transaction writes at a time. So when many runs start and end at once, each
waiting for its own transaction in turn, the queue grows with the load. A
:class:`GroupCommit` writes the first call at once; calls that arrive while that write is
under way wait for it to end and then go together, in the next one. At one call at a time
nothing waits longer than before; under load, the transactions grow instead of the queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from sensors.runs.tables import ROWS, end_all_waits, run_attempts, run_phases

if TYPE_CHECKING:
    from sensors.runs.models import RunRecord
    from sensors.runs.phases import WorkflowPhase

__all__ = ["GroupCommit", "Transaction", "Write", "write_all"]

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Calls ``write`` with the items of the calls that arrived while it last ran.

    ``write`` writes a list of items in one transaction and returns an answer per item, in
    order: a result, or the exception that item alone raises. An exception ``write`` raises
    (an outage of the store) is raised to every caller of that batch.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[Sequence[R | Exception]]]) -> None:
        self._write = write
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a cancelled caller leaves its answer unread
        self._pending.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="group commit")
        # A caller that is cancelled does not take its item back: it may be written already.
        return await asyncio.shield(future)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                answers = await self._write([item for item, _ in batch])
            except Exception as exc:
                answers = [exc] * len(batch)
            except BaseException as exc:  # cancelled: the callers must not wait forever
                for _, future in batch + self._pending:
                    if not future.done():
                        future.set_exception(exc)
                self._pending = []
                raise
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


def _retrieved(future: asyncio.Future[R]) -> None:
    if not future.cancelled():
        future.exception()


class Transaction:
    """A write transaction of :meth:`RunStore.together`: its connection (synchronous: the
    whole transaction runs without a hop back to the event loop), and what its writes
    leave for its end, to be written there in one statement each: attempts and phase
    changes to insert, runs whose waits to end.

    A write sees what the writes before it in the batch did at once (their updates), not
    what they left for the end. It never needs to: a caller asks for a run's next write
    once its previous one is written.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.attempts: list[dict[str, Any]] = []  # rows of run_attempts
        self.phases: list[dict[str, Any]] = []  # rows of run_phases (tables.phase_row)
        self.ended: list[tuple[RunRecord, WorkflowPhase]] = []  # runs final: end their waits

    def finish(self) -> None:
        """Write what the batch's writes left for the end."""
        for table, rows in ((run_attempts, self.attempts), (run_phases, self.phases)):
            for start in range(0, len(rows), ROWS):
                self.conn.execute(table.insert().values(rows[start : start + ROWS]))
        for statement in end_all_waits(self.ended):
            self.conn.execute(statement)


Write = Callable[[Transaction], T]


def write_all(conn: Connection, writes: list[Write[Any]]) -> list[Any]:
    transaction = Transaction(conn)
    answers = [write(transaction) for write in writes]
    transaction.finish()
    return answers
