"""Pages that keep themselves current (``/live``), and the runs list (``/runs``)."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
