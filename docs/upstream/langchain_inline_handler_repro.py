"""langchain-core: one ``run_inline`` handler hides an async completion model's start from every other handler.

No network, no API key: ``pip install langchain-core`` and ``python langchain_inline_handler_repro.py``.
"""

import asyncio
from typing import Any

import langchain_core
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListChatModel, FakeListLLM


class InlineHandler(BaseCallbackHandler):
    """Any handler that sets run_inline (LangChainTracer does, for example). It does nothing else."""

    run_inline = True


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_llm_start(self, serialized: Any, prompts: Any, **kwargs: Any) -> None:
        self.events.append("on_llm_start")

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.events.append("on_chat_model_start")

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.events.append("on_llm_end")


async def events(model: Any, with_inline: bool) -> tuple[list[str], list[str]]:
    recorder = Recorder()
    callbacks: list[Any] = [recorder, InlineHandler()] if with_inline else [recorder]
    await model.ainvoke("hi", config={"callbacks": callbacks})
    streamed = [event["event"] async for event in
                model.astream_events("hi", config={"callbacks": callbacks[1:]}, version="v2")]
    return recorder.events, streamed


async def main() -> None:
    print("langchain-core", langchain_core.__version__)
    for name, make in (("FakeListLLM (BaseLLM)", lambda: FakeListLLM(responses=["a", "b"])),
                       ("FakeListChatModel", lambda: FakeListChatModel(responses=["a", "b"]))):
        for with_inline in (False, True):
            handler_events, streamed = await events(make(), with_inline)
            print(f"{name:22} inline handler present={with_inline!s:5} handler saw {handler_events}; "
                  f"astream_events: {streamed}")


if __name__ == "__main__":
    asyncio.run(main())
