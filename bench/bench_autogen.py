"""Added time per LLM call of the AutoGen AgentChat and classic AG2 plugins.

Run: ``python bench/bench_autogen.py [--calls N] [--rounds R]``. Each case runs the real framework code
path with an in-process model client that answers at once (an OpenAI-shaped response with usage and
cached tokens; the AgentChat one logs ``LLMCallEvent`` like autogen-ext's OpenAI client does), first
without AgentWatch, then after ``agentwatch.init()``. The difference of the medians is what AgentWatch
adds per call: breaker check, span, event reading, pricing, export queueing. Prints numbers only; no
target is asserted, since timings depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import agentwatch

__all__ = ["main"]

MODEL = "gpt-4o-mini"
_USAGE = {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132,
          "prompt_tokens_details": {"cached_tokens": 64}}


# ---- AgentChat --------------------------------------------------------------------------------------


def _agentchat_client() -> Any:
    from autogen_core import EVENT_LOGGER_NAME
    from autogen_core.logging import LLMCallEvent, LLMStreamEndEvent, LLMStreamStartEvent
    from autogen_core.models import ChatCompletionClient, CreateResult, ModelInfo, RequestUsage

    event_logger = logging.getLogger(EVENT_LOGGER_NAME)
    info = ModelInfo(vision=False, function_calling=True, json_output=False, family="gpt-4o",
                     structured_output=False)

    class InstantClient(ChatCompletionClient):
        """Answers at once, reporting usage through the event logger as autogen-ext's clients do."""

        def _result(self) -> Any:
            return CreateResult(finish_reason="stop", content="ok", cached=False,
                                usage=RequestUsage(prompt_tokens=120, completion_tokens=12))

        async def create(self, messages: Sequence[Any], **kwargs: Any) -> Any:
            event_logger.info(LLMCallEvent(messages=[], prompt_tokens=120, completion_tokens=12, response={
                "model": MODEL, "usage": _USAGE, "choices": [{"finish_reason": "stop"}]}))
            return self._result()

        async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[Any, None]:
            event_logger.info(LLMStreamStartEvent(messages=[]))
            for piece in ("o", "k", "!"):
                yield piece
            result = self._result()
            event_logger.info(LLMStreamEndEvent(response=result.model_dump(), prompt_tokens=120,
                                                completion_tokens=12))
            yield result

        async def close(self) -> None:
            return None

        def actual_usage(self) -> Any:
            return RequestUsage(prompt_tokens=0, completion_tokens=0)

        def total_usage(self) -> Any:
            return RequestUsage(prompt_tokens=0, completion_tokens=0)

        def count_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
            return 0

        def remaining_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
            return 100_000

        @property
        def capabilities(self) -> Any:
            return info

        @property
        def model_info(self) -> Any:
            return info

    client = InstantClient()
    client._create_args = {"model": MODEL}  # where autogen-ext's clients keep the model
    return client


def _agentchat_cases() -> dict[str, Callable[[], Awaitable[Any]]]:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core import CancellationToken
    from autogen_core.models import UserMessage

    client = _agentchat_client()
    messages = [UserMessage(content="hello", source="user")]
    agent = AssistantAgent("writer", model_client=client)

    async def create() -> None:
        await client.create(messages)

    async def stream() -> None:
        async for _ in client.create_stream(messages):
            pass

    async def agent_run() -> None:
        await agent.run(task="hello")
        await agent.on_reset(CancellationToken())  # the same history length on every call

    return {"agentchat create()": create, "agentchat create_stream()": stream,
            "agentchat AssistantAgent.run() (1 LLM call)": agent_run}


# ---- AG2 --------------------------------------------------------------------------------------------


def _ag2_cases() -> dict[str, Callable[[], Any]]:
    from autogen import ConversableAgent, OpenAIWrapper
    from openai.types.chat import ChatCompletion

    response = ChatCompletion.model_validate({
        "id": "bench", "object": "chat.completion", "created": 0, "model": MODEL, "usage": _USAGE,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "ok"}}]})

    class InstantAG2Client:
        """An AG2 ModelClient that answers at once."""

        def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
            pass

        def create(self, params: dict[str, Any]) -> Any:
            return response.model_copy()

        def message_retrieval(self, answer: Any) -> list[Any]:
            return [choice.message for choice in answer.choices]

        def cost(self, answer: Any) -> float:
            return 0.0

        @staticmethod
        def get_usage(answer: Any) -> dict[str, Any]:
            return {"prompt_tokens": 120, "completion_tokens": 12, "total_tokens": 132, "cost": 0.0,
                    "model": MODEL}

    config = {"config_list": [{"model": MODEL, "model_client_cls": "InstantAG2Client"}], "cache_seed": None}
    wrapper = OpenAIWrapper(**config)
    wrapper.register_model_client(InstantAG2Client)
    agent = ConversableAgent("assistant", llm_config=config, human_input_mode="NEVER",
                             max_consecutive_auto_reply=10**9)
    agent.register_model_client(InstantAG2Client)
    messages = [{"role": "user", "content": "hello"}]

    def create() -> None:
        wrapper.create(messages=messages)

    def reply() -> None:
        agent.generate_reply(messages=messages)

    return {"ag2 OpenAIWrapper.create()": create, "ag2 ConversableAgent.generate_reply() (1 LLM call)": reply}


# ---- timing -----------------------------------------------------------------------------------------


async def _time_async(case: Callable[[], Awaitable[Any]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await case()
    return (time.perf_counter() - start) / calls * 1e6


def _time_sync(case: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        case()
    return (time.perf_counter() - start) / calls * 1e6


def _one_round(async_cases: dict[str, Callable[[], Awaitable[Any]]], sync_cases: dict[str, Callable[[], Any]],
               calls: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    gc.collect()
    gc.disable()  # a collection inside one case would be noise unrelated to AgentWatch
    try:
        for name, case in async_cases.items():
            timings[name] = asyncio.run(_time_async(case, calls))
        for name, sync_case in sync_cases.items():
            timings[name] = _time_sync(sync_case, calls)
    finally:
        gc.enable()
    return timings


def _start() -> None:
    # A roomy budget: every check runs and none trips. The in-memory exporter keeps export cheap.
    agentwatch.init(exporters=[agentwatch.InMemoryExporter()], budget_per_hour=1e9,
                    max_calls_per_minute=10**9, max_error_rate=0.99, block_on_threshold=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (the median is reported)")
    args = parser.parse_args(argv)
    logging.getLogger("autogen").setLevel(logging.ERROR)

    async_cases, sync_cases = _agentchat_cases(), _ag2_cases()
    # Warm up both ways (imports, price table, first-call caches), then alternate rounds without and
    # with AgentWatch so that drift on a shared machine hits both sides alike.
    _one_round(async_cases, sync_cases, max(10, args.calls // 10))
    _start()
    _one_round(async_cases, sync_cases, max(10, args.calls // 10))
    agentwatch.shutdown()
    without: dict[str, list[float]] = {name: [] for name in (*async_cases, *sync_cases)}
    watched: dict[str, list[float]] = {name: [] for name in without}
    for _ in range(args.rounds):
        for name, value in _one_round(async_cases, sync_cases, args.calls).items():
            without[name].append(value)
        _start()
        try:
            for name, value in _one_round(async_cases, sync_cases, args.calls).items():
                watched[name].append(value)
        finally:
            agentwatch.shutdown()

    print(f"median of {args.rounds} rounds x {args.calls} calls")
    print(f"{'case':52} {'without (us)':>13} {'with (us)':>11} {'added (us)':>11}")
    for name in without:
        base, with_it = statistics.median(without[name]), statistics.median(watched[name])
        print(f"{name:52} {base:13.1f} {with_it:11.1f} {with_it - base:11.1f}")


if __name__ == "__main__":
    main()
