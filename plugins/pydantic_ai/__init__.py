"""Pydantic AI runs traced and guarded: nothing to import, ``agentwatch.init()`` instruments ``pydantic_ai``."""

from __future__ import annotations

__all__: list[str] = []
