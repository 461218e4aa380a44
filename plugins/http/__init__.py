"""LLM calls over plain HTTP, and the transport taps the openai and anthropic plugins share.

Nothing to import: ``agentwatch.init()`` activates it. Register an OpenAI-compatible server that is not
a known provider host with ``agentwatch.init(providers={"http://my-vllm:8000": "openai"})``.
"""

from __future__ import annotations

__all__: list[str] = []
