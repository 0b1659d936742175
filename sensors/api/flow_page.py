"""The event-flow page (``/flow``): what triggers what, drawn as a graph."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
