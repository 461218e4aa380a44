"""The observing layer for classic AG2: a runtime logger (``autogen.runtime_logging``).

AG2 reports each completion to the runtime logger: the served model, the usage with cached tokens, its
own cost figure, cache hits (nothing sent) and provider errors of failed attempts. Each report is added
to the LLM call in flight (opened by ``OpenAIWrapper.create``), never counted on its own.

AG2 has one runtime logger per process. If the application already runs one (its SQLite or file log),
ours passes every record on to it; ``shutdown()`` puts the application's logger back as it was.
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

from agentwatch._llm import current_llm_call
from agentwatch._safe import stop_on_exception

from ._llm import CACHE_HIT, record_response

__all__ = ["install", "uninstall"]

_state: dict[str, Any] = {}


def _make_logger_class() -> type:
    from autogen.logger.base_logger import BaseLogger

    class AgentWatchRuntimeLogger(BaseLogger):  # type: ignore[misc]
        """Adds AG2's completion records to the LLM call in flight, then hands everything to ``previous``."""

        def __init__(self, previous: Any) -> None:
            self.previous = previous

        def _forward(self, method: str, *args: Any) -> Any:
            if self.previous is None:
                return None
            return getattr(self.previous, method)(*args)

        def start(self) -> str:
            return str(uuid.uuid4())

        def stop(self) -> None:
            self._forward("stop")

        def get_connection(self) -> None | sqlite3.Connection:
            return self._forward("get_connection")

        def log_chat_completion(self, invocation_id: uuid.UUID, client_id: int, wrapper_id: int, source: Any,
                                request: dict[str, Any], response: Any, is_cached: int, cost: float,
                                start_time: str) -> None:
            _observe_completion(response, is_cached, cost)
            self._forward("log_chat_completion", invocation_id, client_id, wrapper_id, source, request,
                          response, is_cached, cost, start_time)

        def log_new_agent(self, agent: Any, init_args: dict[str, Any]) -> None:
            self._forward("log_new_agent", agent, init_args)

        def log_event(self, source: Any, name: str, **kwargs: Any) -> None:
            if self.previous is not None:
                self.previous.log_event(source, name, **kwargs)

        def log_new_wrapper(self, wrapper: Any, init_args: dict[str, Any]) -> None:
            self._forward("log_new_wrapper", wrapper, init_args)

        def log_new_client(self, client: Any, wrapper: Any, init_args: dict[str, Any]) -> None:
            self._forward("log_new_client", client, wrapper, init_args)

        def log_function_use(self, source: Any, function: Any, args: dict[str, Any], returns: Any) -> None:
            self._forward("log_function_use", source, function, args, returns)

    return AgentWatchRuntimeLogger


@stop_on_exception
def _observe_completion(response: Any, is_cached: int, cost: float) -> None:
    call = current_llm_call()
    if call is None or call.ended:
        return
    attempts = int(call.span.attributes.get("ag2.attempts", 0)) + 1
    call.set_attribute("ag2.attempts", attempts)
    if isinstance(response, str):  # a failed attempt: AG2 logs "error_code:..., config i failed"
        call.set_attribute("ag2.provider_error", response[:500])
        return
    if is_cached:
        call.set_attribute(CACHE_HIT, True)  # nothing was sent: no tokens, no cost
        return
    record_response(call, response)
    if isinstance(cost, int | float):
        call.set_attribute("ag2.cost_usd", float(cost))


def install() -> None:
    from autogen import runtime_logging

    if _state:
        return
    previous = runtime_logging.autogen_logger if runtime_logging.is_logging else None
    ours = _make_logger_class()(previous)
    _state.update(previous_logger=runtime_logging.autogen_logger,
                  previous_is_logging=runtime_logging.is_logging, ours=ours)
    runtime_logging.autogen_logger = ours
    runtime_logging.is_logging = True


def uninstall() -> None:
    from autogen import runtime_logging

    if not _state:
        return
    # Only if it is still ours: an application that started its own logger since keeps it.
    if runtime_logging.autogen_logger is _state["ours"]:
        runtime_logging.autogen_logger = _state["previous_logger"]
        runtime_logging.is_logging = _state["previous_is_logging"]
    _state.clear()
