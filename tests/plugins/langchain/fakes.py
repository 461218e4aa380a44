"""A scripted chat model that reports usage like a real provider (the only fake: it stands in for the LLM)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult


class UsageChatModel(BaseChatModel):
    """Answers ``reply`` and reports ``input_tokens``/``output_tokens`` (and cache reads) per call."""

    model_name: str = "gpt-4o"
    reply: str = "ok"
    input_tokens: int = 1000
    output_tokens: int = 500
    cached_tokens: int = 0
    fail_with: str | None = None
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="openai", ls_model_name=self.model_name, ls_model_type="chat")

    def _usage(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
                "input_token_details": {"cache_read": self.cached_tokens}}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.calls += 1
        if self.fail_with:
            raise RuntimeError(self.fail_with)
        message = AIMessage(content=self.reply, usage_metadata=self._usage(),  # type: ignore[arg-type]
                            response_metadata={"model_name": self.model_name, "finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self.calls += 1
        words = self.reply.split(" ")
        for index, word in enumerate(words):
            text = word if index == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        # Like OpenAI with include_usage: the last chunk carries usage and no content.
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata=self._usage(),  # type: ignore[arg-type]
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"}))


# gpt-4o list price: $2.50 / 1M input, $1.25 / 1M cached input, $10 / 1M output
def gpt4o_cost(input_tokens: int = 1000, output_tokens: int = 500, cached: int = 0) -> float:
    return ((input_tokens - cached) * 2.5 + cached * 1.25 + output_tokens * 10) / 1e6
