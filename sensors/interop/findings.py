"""What a translation could not carry over, and why: the refusals, dropped settings and
differences an import reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from triggers.errors import DeclarationError

__all__ = ["Finding", "Untranslatable"]


class Untranslatable(DeclarationError):
    """Raised when part of a foreign declaration has no exact tripwire equivalent."""


@dataclass(frozen=True)
class Finding:
    """One thing an import reports.

    ``refused``: a trigger was not translated (the text says why and what to do);
    ``dropped``: a setting with no tripwire equivalent was left out, and nothing else
    changes; ``differs``: translated, with a difference a user should know.
    """

    kind: Literal["refused", "dropped", "differs"]
    where: str
    text: str

    def line(self) -> str:
        """The finding on one line (newlines in manifest values would break a comment)."""
        return " ".join(f"{self.where}: {self.text}".split())
