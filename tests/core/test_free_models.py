"""The one core rule that local models and test doubles cost nothing, reached through what the LangChain plugin
passes today (``ls_provider`` from the model class) with LangChain's own fake chat models and LLMs. The
same usage on a model nobody knows is priced at the documented $1.00 / $2.00 per 1M tokens, flagged."""

from __future__ import annotations

from typing import Any

import pytest

import agentwatch

_USAGE = {"input_tokens": 1_000, "output_tokens": 500, "total_tokens": 1_500}


def _fake_with_usage() -> Any:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    return GenericFakeChatModel(messages=iter([AIMessage(content="done", usage_metadata=_USAGE)]))


def _unknown_with_usage() -> Any:
    """The application's own chat model (not a fake): same answer and usage, under a name no table knows."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class InHouseChat(BaseChatModel):
        model_name: str = "in-house-model-7"

        @property
        def _llm_type(self) -> str:
            return "in-house"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="done", usage_metadata=_USAGE))])

    return InHouseChat()


def test_langchain_fakes_cost_nothing(memory: agentwatch.InMemoryExporter) -> None:
    from langchain_core.language_models.fake import FakeListLLM
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    agentwatch.init(exporters=[memory])
    assert _fake_with_usage().invoke("hi").content == "done"
    assert FakeListChatModel(responses=["a"]).invoke("hi").content == "a"
    assert FakeListLLM(responses=["b"]).invoke("hi") == "b"
    assert _unknown_with_usage().invoke("hi").content == "done"

    agentwatch.flush()
    fake, fake_list, fake_llm, unknown = memory.by_kind("llm")
    assert (fake["input_tokens"], fake["output_tokens"]) == (1_000, 500)
    for span in (fake, fake_list, fake_llm):
        assert span["cost_usd"] == 0.0 and "cost_estimated" not in span["attributes"], span["provider"]
    assert unknown["cost_usd"] == pytest.approx(1_000 * 1.00 / 1e6 + 500 * 2.00 / 1e6)
    assert unknown["attributes"]["cost_estimated"] is True
