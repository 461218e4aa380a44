"""Install and remove everything the AutoGen AgentChat plugin puts into autogen-core / autogen-agentchat."""

from __future__ import annotations

import threading

from agentwatch.instrumentation import stop_on_exception

from ._agents import (
    wrap_function_tool_run,
    wrap_on_messages,
    wrap_on_messages_stream,
    wrap_run_json,
    wrap_run_json_stream,
    wrap_run_stream,
)
from ._events import EventTap
from ._model_client import wrap_create, wrap_create_stream
from ._patching import SubclassPatcher, Target

__all__ = ["install", "uninstall", "installed"]

_lock = threading.Lock()
_installed: list[SubclassPatcher | EventTap] = []

_TARGETS: list[Target] = [
    ("autogen_core", "ChatCompletionClient", {"create": wrap_create, "create_stream": wrap_create_stream}),
    ("autogen_core", "BaseTool", {"run_json": wrap_run_json}),
    ("autogen_core", "BaseStreamTool", {"run_json_stream": wrap_run_json_stream}),
    ("autogen_core", "FunctionTool", {"run": wrap_function_tool_run}),
    ("autogen_agentchat", "BaseChatAgent",
     {"on_messages": wrap_on_messages, "on_messages_stream": wrap_on_messages_stream}),
    ("autogen_agentchat", "BaseGroupChat", {"run_stream": wrap_run_stream}),
]


def installed() -> bool:
    return bool(_installed)


def install() -> None:
    from autogen_core import ComponentBase

    with _lock:
        if _installed:
            return
        patcher = SubclassPatcher(ComponentBase, _TARGETS)
        patcher.install()
        _installed.append(patcher)
        tap = EventTap()
        tap.install()
        _installed.append(tap)


def uninstall() -> None:
    with _lock:
        while _installed:
            stop_on_exception(_installed.pop().uninstall)()
