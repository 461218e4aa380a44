"""The context a LangGraph node's code runs in: the node's span current, its agent scopes pushed.

LangGraph runs a node's code in a copy of the context it makes right after the node's start callback
(``set_config_context`` in ``langgraph._internal._runnable``). Setting the values there, not in the caller's
context at the start callback, keeps them out of the caller: LangChain ends an async run in a task of its own
(its ``shielded`` end callbacks), where nothing set in the caller could be undone. An LLM call the node's code
makes without LangChain (the openai SDK used directly) then finds the node and its agents.
"""

from __future__ import annotations

import sys
from contextvars import Context
from types import ModuleType
from typing import Any

from agentwatch.instrumentation import stop_on_exception

from ._runs import RUNS, entered

__all__ = ["wrap_set_config_context", "runnable_module"]


def runnable_module() -> ModuleType | None:
    """LangGraph's module holding ``set_config_context``, if LangGraph (this layout of it) is imported."""
    runnable = sys.modules.get("langgraph._internal._runnable")
    return runnable if callable(getattr(runnable, "set_config_context", None)) else None


def wrap_set_config_context(original: Any) -> Any:
    def set_config_context(config: Any, *args: Any, **kwargs: Any) -> Any:
        return _EnteringNode(original(config, *args, **kwargs), config)

    return set_config_context


class _EnteringNode:
    """``set_config_context``'s context manager, entering the node whose child config this is."""

    __slots__ = ("_inner", "_config")

    def __init__(self, inner: Any, config: Any) -> None:
        self._inner = inner
        self._config = config

    def __enter__(self) -> Context:
        context: Context = self._inner.__enter__()
        _enter_node(context, self._config)
        return context

    def __exit__(self, *exc_info: Any) -> Any:
        return self._inner.__exit__(*exc_info)


@stop_on_exception
def _enter_node(context: Context, config: Any) -> None:
    callbacks = config.get("callbacks") if isinstance(config, dict) else None
    parent = getattr(callbacks, "parent_run_id", None)
    run = RUNS.get(parent) if parent is not None else None
    if run is not None and run.span.kind == "node":
        context.run(entered, run)  # the copy is dropped when the node's code ends: nothing to undo
