"""Added time per LLM call of the AutoGen AgentChat and classic AG2 plugins.

Run: ``python bench/bench_autogen.py [--calls N] [--rounds R] [--no-collector]``. Each case runs the real
framework code path with an in-process model client that answers at once (an OpenAI-shaped response with
usage and cached tokens; the AgentChat one logs ``LLMCallEvent`` like autogen-ext's OpenAI client does).
Rounds alternate in one process between no AgentWatch and a plain ``init()`` with the collector down
(the default HTTP exporter spooling) and up (``agentwatch serve`` in its own process); each round is
timed in process CPU time (every thread, the export worker's included) and wall time. The difference
of the medians is what AgentWatch adds per call: breaker check, span, event reading, pricing, export.
A profile summary (cProfile of AgentWatch's functions per call) follows. Prints numbers only; no target
is asserted, since timings depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _framework_overhead import collector, init_settings, interleaved_rounds, median_table, profile_summary  # noqa: E402

import agentwatch  # noqa: E402

__all__ = ["main"]

MODEL = "gpt-4o-mini"
TARGET_US = 50.0
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="calls per timed round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median is reported)")
    parser.add_argument("--no-collector", action="store_true", help="skip the collector-up mode")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile summary")
    args = parser.parse_args(argv)
    logging.getLogger("autogen").setLevel(logging.ERROR)
    logging.getLogger("agentwatch").setLevel(logging.ERROR)  # "collector not reachable", once per init()

    loop = asyncio.new_event_loop()

    def on_loop(case: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
        return lambda: loop.run_until_complete(case())

    cases: dict[str, Callable[[], Any]] = {name: on_loop(case) for name, case in _agentchat_cases().items()}
    cases.update(_ag2_cases())
    with collector(not args.no_collector) as collector_url:
        settings = init_settings(collector_url)
        modes, samples = interleaved_rounds(cases, settings, args.rounds, lambda _name: args.calls, 20)
        profiles = []
        if not args.no_profile:
            agentwatch.init(**settings["down"])
            try:
                for name in cases:  # every path: a regression shows where it lands
                    profiles.append(profile_summary(cases[name], 2000, f"down, {name}"))
            finally:
                agentwatch.shutdown()
    # Closed as asyncio.run closes its loop: AgentChat leaves tasks and async generators behind, which would
    # otherwise be reported as destroyed while pending.
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:  # gather() of nothing makes a future on the default loop, which this loop refuses to run
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    print(median_table(f"AutoGen / AG2, {args.rounds} interleaved rounds x {args.calls} calls; medians; "
                       "an in-process model client answers at once", samples, modes,
                       {name: TARGET_US for name in cases}))
    for profile in profiles:
        print(profile)


if __name__ == "__main__":
    main()
