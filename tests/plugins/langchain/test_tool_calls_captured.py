"""With ``capture_messages=True`` a LangChain model call keeps tool calls: in its output and in the history it is sent.

LangChain keeps a model's tool calls beside the message's content (``AIMessage.tool_calls``, a stream's
``tool_call_chunks``) and a tool's answer with its ``tool_call_id``. Only type and content used to be captured (found
2026-12-06): a tool-calling turn had ``output`` None, the AI message in the next turn's input had no calls (an empty
``parts`` list over OTLP) and the tool result was plain text without its id. They are now captured in the shape the HTTP
layer gives the same calls made with a provider's SDK, which the otlp exporter turns into tool-call parts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import agentwatch
from agentwatch.instrumentation import TEXT_LIMIT
from agentwatch.plugins.otlp._mapping import genai_attributes
from tests.stubs.provider_server import Reply, StubProvider

WEATHER_CALL = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
CAPTURED_CALL = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
HISTORY = [HumanMessage("weather in Paris?"), AIMessage(content="", tool_calls=[WEATHER_CALL]),
           ToolMessage("rainy", tool_call_id="call_1")]


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return "rainy"


class StreamedToolCalls(BaseChatModel):
    """Streams one tool call in pieces, as providers do: its arguments' text arrives in two chunks."""

    pieces: list[str] = ['{"city":', ' "Paris" }']  # spacing of the model's own, not json.dumps's

    @property
    def _llm_type(self) -> str:
        return "streamed-tool-calls"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=[WEATHER_CALL]))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        yield ChatGenerationChunk(message=AIMessageChunk(content="Checking. "))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[
            {"name": "get_weather", "args": self.pieces[0], "id": "call_1", "index": 0, "type": "tool_call_chunk"}]))
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[
            {"name": None, "args": self.pieces[1], "id": None, "index": 0, "type": "tool_call_chunk"}]))


def _model_spans(memory: agentwatch.InMemoryExporter) -> list[dict[str, Any]]:
    agentwatch.flush()
    return [span for span in memory.spans if span["kind"] == "llm"]


def test_a_tool_calling_answer_is_the_output(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    answers = iter([AIMessage(content="", tool_calls=[WEATHER_CALL]),
                    AIMessage(content="Let me look.", tool_calls=[WEATHER_CALL])])
    model = GenericFakeChatModel(messages=answers)
    model.invoke("weather in Paris?")
    asyncio.run(model.ainvoke("weather in Paris?"))
    bare, with_text = _model_spans(memory)
    assert bare["output"] == {"role": "assistant", "content": None, "tool_calls": [CAPTURED_CALL]}
    assert with_text["output"] == {"role": "assistant", "content": "Let me look.", "tool_calls": [CAPTURED_CALL]}
    parts = genai_attributes(with_text)["gen_ai.output.messages"][0]["parts"]
    assert parts == [{"type": "text", "content": "Let me look."},
                     {"type": "tool_call", "name": "get_weather", "id": "call_1", "arguments": {"city": "Paris"}}]


def test_the_history_keeps_the_calls_and_the_results_answering_them(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    GenericFakeChatModel(messages=iter(["It is rainy."])).invoke(HISTORY)
    [span] = _model_spans(memory)
    assert span["input"] == [{"role": "human", "content": "weather in Paris?"},
                             {"role": "ai", "content": "", "tool_calls": [CAPTURED_CALL]},
                             {"role": "tool", "content": "rainy", "tool_call_id": "call_1"}]
    assert span["output"] == "It is rainy."  # an answer without tool calls stays its text
    assert genai_attributes(span)["gen_ai.input.messages"][1:] == [
        {"role": "assistant",
         "parts": [{"type": "tool_call", "name": "get_weather", "id": "call_1", "arguments": {"city": "Paris"}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]}]


def test_a_call_already_among_the_content_blocks_is_kept_once(memory: agentwatch.InMemoryExporter) -> None:
    """Anthropic's replies hold their calls as ``tool_use`` content blocks as well as in ``tool_calls``."""
    agentwatch.init(exporters=[memory], capture_messages=True)
    block = {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    replied = AIMessage(content=[{"type": "text", "text": "Checking."}, block], tool_calls=[WEATHER_CALL])
    GenericFakeChatModel(messages=iter(["ok"])).invoke([HumanMessage("weather in Paris?"), replied])
    [span] = _model_spans(memory)
    assert span["input"][1] == {"role": "ai", "content": [{"type": "text", "text": "Checking."}, block]}
    parts = genai_attributes(span)["gen_ai.input.messages"][1]["parts"]
    assert [part["type"] for part in parts] == ["text", "tool_call"]


@pytest.mark.parametrize("flavour", ["stream", "astream"])
def test_a_streamed_call_keeps_the_arguments_the_model_wrote(flavour: str,
                                                             memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    model = StreamedToolCalls()
    if flavour == "stream":
        chunks = list(model.stream("weather in Paris?"))
    else:
        async def collect() -> list[Any]:
            return [chunk async for chunk in model.astream("weather in Paris?")]
        chunks = asyncio.run(collect())
    assert len(chunks) >= 3
    [span] = _model_spans(memory)
    assert span["output"] == {"role": "assistant", "content": "Checking. ", "tool_calls": [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris" }'}]}


def test_chat_openai_tool_turns_streamed_or_not(memory: agentwatch.InMemoryExporter,
                                                stub_provider: StubProvider) -> None:
    """The real integration, through the openai SDK at the stub: the HTTP layer adds to the LangChain call."""
    agentwatch.init(exporters=[memory], capture_messages=True)
    model = ChatOpenAI(model="gpt-4o-mini", base_url=stub_provider.openai_base_url, api_key="sk-test",
                       max_retries=0).bind_tools([get_weather])
    asking = Reply(content="", tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    stub_provider.queue(asking, asking, Reply(content="It is rainy."))
    first = model.invoke([HumanMessage("weather in Paris?")])
    streamed: Any = None
    for chunk in model.stream([HumanMessage("weather in Paris?")]):
        streamed = chunk if streamed is None else streamed + chunk
    # the stub numbers its replies
    assert (first.tool_calls[0]["id"], streamed.tool_calls[0]["id"]) == ("call_stub_1_0", "call_stub_2_0")
    model.invoke([HumanMessage("weather in Paris?"), first, ToolMessage("rainy", tool_call_id="call_stub_1_0")])
    called, streamed_call, answered = _model_spans(memory)
    expected = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_stub_1_0", "name": "get_weather", "arguments": json.dumps({"city": "Paris"})}]}
    assert called["output"] == expected
    assert streamed_call["output"] == {**expected, "tool_calls": [{**expected["tool_calls"][0], "id": "call_stub_2_0"}]}
    assert called["attributes"]["finish_reason"] == "tool_calls"
    assert answered["input"][1:] == [
        {"role": "ai", "content": "", "tool_calls": [expected["tool_calls"][0]]},
        {"role": "tool", "content": "rainy", "tool_call_id": "call_stub_1_0"}]
    assert answered["output"] == "It is rainy."
    out = genai_attributes(called)["gen_ai.output.messages"]
    assert out == [{"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "tool_call", "name": "get_weather", "id": "call_stub_1_0", "arguments": {"city": "Paris"}}]}]


def test_arguments_are_clipped_like_other_text(memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], capture_messages=True)
    long_call = {**WEATHER_CALL, "args": {"city": "P" * (2 * TEXT_LIMIT)}}
    GenericFakeChatModel(messages=iter([AIMessage(content="", tool_calls=[long_call])])).invoke(
        [HumanMessage("hi"), AIMessage(content="", tool_calls=[long_call])])
    [span] = _model_spans(memory)
    assert len(span["output"]["tool_calls"][0]["arguments"]) == TEXT_LIMIT
    assert len(span["input"][1]["tool_calls"][0]["arguments"]) == TEXT_LIMIT


@pytest.mark.parametrize("config", [{"capture_messages": False},
                                    {"capture_messages": True, "zero_data_retention": True}])
def test_no_tool_call_is_kept_where_text_is_not(config: dict[str, Any], memory: agentwatch.InMemoryExporter) -> None:
    agentwatch.init(exporters=[memory], **config)
    GenericFakeChatModel(messages=iter([AIMessage(content="", tool_calls=[WEATHER_CALL])])).invoke(HISTORY)
    list(StreamedToolCalls().stream(HISTORY))
    for span in _model_spans(memory):
        assert span.get("input") is None and span.get("output") is None
