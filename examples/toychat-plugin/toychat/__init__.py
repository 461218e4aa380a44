"""toychat: a toy agent framework, the "framework" that the example plugin ``agentwatch_toychat`` instruments.

A ``Model`` sends a chat request through its ``transport`` (a scripted stand-in for a provider here; a real
framework would POST the request) and tells the registered ``Handler``s before and after. An ``Agent`` runs a
task with its model and tells the handlers when it starts and ends. A handler that raises in a ``*_start``
callback stops the work before it happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Agent", "Handler", "Model", "handlers", "scripted_transport"]

Request = dict[str, Any]
Response = dict[str, Any]


class Handler:
    """Callbacks of toychat; override what you need."""

    def on_agent_start(self, agent: Agent, task: str) -> None: ...

    def on_agent_end(self, agent: Agent, error: BaseException | None) -> None: ...

    def on_request_start(self, model: Model, request: Request) -> None: ...

    def on_request_end(self, model: Model, request: Request, response: Response) -> None: ...

    def on_request_error(self, model: Model, request: Request, error: BaseException) -> None: ...


#: The handlers every model and agent tells, in order.
handlers: list[Handler] = []


def scripted_transport(request: Request) -> Response:
    """Answers as a provider would, with Anthropic-style usage (``input_tokens`` excludes cache reads)."""
    prompt = " ".join(message["content"] for message in request["messages"])
    return {"model": request["model"], "text": f"echo: {prompt}", "stop_reason": "end_turn",
            "usage": {"input_tokens": 1200, "cache_read_input_tokens": 800, "output_tokens": 300}}


class Model:
    def __init__(self, name: str, transport: Callable[[Request], Response] = scripted_transport) -> None:
        self.name = name
        self.transport = transport
        #: Every request that was sent (a blocked one never is).
        self.sent: list[Request] = []

    def chat(self, prompt: str) -> str:
        request: Request = {"model": self.name, "max_tokens": 512,
                            "messages": [{"role": "user", "content": prompt}]}
        for handler in list(handlers):
            handler.on_request_start(self, request)
        try:
            self.sent.append(request)
            response = self.transport(request)
        except BaseException as error:
            for handler in list(handlers):
                handler.on_request_error(self, request, error)
            raise
        for handler in list(handlers):
            handler.on_request_end(self, request, response)
        return str(response["text"])


class Agent:
    def __init__(self, name: str, model: Model) -> None:
        self.name = name
        self.model = model

    def run(self, task: str) -> str:
        for handler in list(handlers):
            handler.on_agent_start(self, task)
        try:
            result = self.model.chat(task)
        except BaseException as error:
            for handler in list(handlers):
                handler.on_agent_end(self, error)
            raise
        for handler in list(handlers):
            handler.on_agent_end(self, None)
        return result
