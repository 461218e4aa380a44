"""LiteLLM calls traced and guarded: nothing to import, ``agentwatch.init()`` instruments ``litellm``."""

from __future__ import annotations

__all__: list[str] = []
