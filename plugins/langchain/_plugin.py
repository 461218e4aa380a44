"""Entry point: zero-config LangChain/LangGraph tracing through LangChain's own configure hook.

LangSmith auto-traces the same way: every callback manager LangChain configures gets one
``AgentWatchHandler`` unless it already holds one (so an explicit handler is never doubled).
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument", "agentwatch_before_block"]

AGENTWATCH_REQUIRES = ("langchain_core",)

_installed: list[tuple[Any, ...]] = []
#: Set from ``_install`` until LangChain imports its tracer context and our configure hook is registered there.
_awaiting_tracer_context: list[bool] = []
#: LangChain's configure hooks live here. It imports LangSmith's client (~70 ms, over a second on a cold disk);
#: LangChain itself imports it only when its first run configures callbacks.
_TRACER_CONTEXT = "langchain_core.tracers.context"


#: Set when the hook ran while ``_handler`` itself was being imported (see ``agentwatch_instrument``).
_deferred: list[Any] = []


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    handler_module = sys.modules.get(__package__ + "._handler")
    if handler_module is not None and not hasattr(handler_module, "AgentWatchHandler"):
        # ``from agentwatch.plugins.langchain import AgentWatchHandler`` after ``init()`` is what imported
        # langchain_core (and so ran this hook): ``_handler`` is half-imported and calls install_deferred() when done.
        _deferred.append(client)
        return
    _install(client)


def install_deferred() -> None:
    """Finish an ``agentwatch_instrument`` that ran while ``_handler`` was being imported."""
    if _deferred:
        client = _deferred.pop()
        _deferred.clear()
        _install(client)


def _install(client: Any) -> None:
    from ._handler import AgentWatchHandler
    from ._patches import install

    if _installed or _awaiting_tracer_context:
        return
    install(AgentWatchHandler, client.when_imported)
    # The configure hook goes in when LangChain imports its tracer context (its first run), not by importing it now.
    _awaiting_tracer_context.append(True)
    client.when_imported(_TRACER_CONTEXT, _register_configure_hook)


def _register_configure_hook(tracer_context: Any) -> None:
    """Every callback manager LangChain configures from now on gets one ``AgentWatchHandler``."""
    if not _awaiting_tracer_context:  # uninstrumented meanwhile
        return
    _awaiting_tracer_context.clear()
    from ._handler import AgentWatchHandler

    # A default on the variable (not .set()) makes the handler visible in every thread and task.
    variable: ContextVar[Any] = ContextVar("agentwatch_langchain_handler", default=AgentWatchHandler())  # noqa: B039
    tracer_context.register_configure_hook(variable, True, AgentWatchHandler)
    _installed.append(tracer_context._configure_hooks[-1])


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    from ._patches import uninstall

    uninstall()
    _deferred.clear()
    _awaiting_tracer_context.clear()
    tracer_context = sys.modules.get(_TRACER_CONTEXT)  # not imported: no hook of ours registered
    while _installed:
        entry = _installed.pop()
        if tracer_context is not None and entry in tracer_context._configure_hooks:
            tracer_context._configure_hooks.remove(entry)


@hookimpl
def agentwatch_before_block(event: Any) -> bool:
    # Nothing can have paused before a graph node ran (which imported the module): no import for other programs' blocks.
    node_context = sys.modules.get(__package__ + "._node_context")
    return node_context is not None and bool(node_context.take_answer_before_block(event))
