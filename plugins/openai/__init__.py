"""OpenAI SDK calls traced and guarded: nothing to import, ``agentwatch.init()`` instruments the SDK."""

from __future__ import annotations

__all__: list[str] = []
