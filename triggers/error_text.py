"""An error in one line with its type once: ``ValueError: bad value``.

A run's error keeps its type as ``code`` and often in its ``message`` too (the flow's
exception as it was raised); a message passed along from another process or library may
start with its type already. Shown with these, neither reads ``ValueError: ValueError: ...``.
Here, in the SDK, because a run's own process (:mod:`triggers.run`) writes such messages.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["exception_text", "shown_value", "with_code"]


def with_code(code: str, message: str) -> str:
    """``code: message``; just ``message`` when it starts with ``code`` already
    (``Timeout after 30s``), and just ``code`` when there is no message."""
    if not message:
        return code
    return message if message.startswith(code) else f"{code}: {message}"


def exception_text(exc: BaseException) -> str:
    """The exception's type and text, as :func:`with_code` puts them together."""
    return with_code(type(exc).__name__, str(exc))


def shown_value(value: Any, limit: int = 60) -> str:
    """A value in an error, as JSON (``true``, ``"lots"``, ``null``), cut to ``limit``."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except ValueError:  # a circular structure
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
