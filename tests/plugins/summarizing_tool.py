"""A function tool that makes its own LLM call with the openai SDK: the AutoGen and AG2 tool-block tests give it to an
agent whose budget its call then meets."""

from __future__ import annotations

from typing import Any

import openai

from agentwatch import CircuitBreakerException

__all__ = ["summarizer"]


def summarizer(base_url: str, flavour: str, model: str, catch: bool = False) -> Any:
    """``summarize`` as a ``def`` (``flavour="def"``) or ``async def`` tool calling ``model`` at ``base_url``
    (``catch``: and handling a block itself, answering without the summary)."""

    def summarize(text: str) -> str:
        """Summarize a text."""
        sdk = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        try:
            answer = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        except CircuitBreakerException:
            if not catch:
                raise
            return "no budget left for a summary"
        return answer.choices[0].message.content or ""

    async def asummarize(text: str) -> str:
        """Summarize a text."""
        sdk = openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0)
        try:
            answer = await sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
        except CircuitBreakerException:
            if not catch:
                raise
            return "no budget left for a summary"
        return answer.choices[0].message.content or ""

    asummarize.__name__ = "summarize"
    return summarize if flavour == "def" else asummarize
