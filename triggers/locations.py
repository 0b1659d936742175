"""Where a declaration is written, put before its errors.

A bad declaration reads ``flows/orders.py:12: flow 'load': <what is wrong; what to
write>``: the file and the line of the decorator, where the user looks, then what it
declares. The decorators, Metaflow flow classes and event sources locate their
:class:`~triggers.errors.DeclarationError` s here, in one place each; the messages
themselves say only what is wrong and what to do.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from triggers.errors import DeclarationError

__all__ = ["at_caller", "flow_subject", "located", "shown_path"]


@contextmanager
def located(path: str | Path, line: int | None, subject: str) -> Iterator[None]:
    """Locate a DeclarationError raised inside at ``path:line``, naming ``subject``
    (``"flow 'load'"``), unless it is located already."""
    try:
        yield
    except DeclarationError as exc:
        exc.locate(shown_path(path), line, subject)
        raise


def at_caller(subject: str) -> AbstractContextManager[None]:
    """:func:`located` at the line that called the caller of this function: for a
    decorator, the line it is written on (Python gives each decorator of a stack its own)."""
    frame = sys._getframe(2)
    return located(frame.f_code.co_filename, frame.f_lineno, subject)


def flow_subject(flow: object) -> str:
    """What the errors of declaring ``flow`` (a function or a Metaflow class) name: the
    flow, by the name its runs take."""
    return f"flow {getattr(flow, '__name__', flow)!r}"


def shown_path(path: str | Path) -> str:
    """``path`` relative to the current folder when it is under it, else absolute; a
    pseudo-file such as ``<stdin>`` as it is."""
    text = str(path)
    if text.startswith("<"):
        return text
    file = Path(text).resolve()
    try:
        return str(file.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(file)
