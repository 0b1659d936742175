"""One sensor's page (``/sensors/{id}``): its last hour on a timeline."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
