"""Entry point: zero-config LangChain/LangGraph tracing through LangChain's own configure hook.

LangSmith auto-traces the same way: every callback manager LangChain configures gets one
``AgentWatchHandler`` unless it already holds one (so an explicit handler is never doubled).
"""

from __future__ import annotations

import functools
import sys
from contextvars import ContextVar
from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument", "agentwatch_before_block",
           "MANAGER_MODULE", "CHAT_MODELS_MODULE", "COMPLETION_MODELS_MODULE", "MODEL_MODULES"]

AGENTWATCH_REQUIRES = ("langchain_core",)

_installed: list[tuple[Any, ...]] = []
#: Set from ``_install`` until LangChain's callback manager is imported and the patches go in.
_awaiting_manager: list[bool] = []
#: Set from ``_install`` until LangChain imports its tracer context and our configure hook is registered there.
_awaiting_tracer_context: list[bool] = []
#: LangChain's configure hooks live here. It imports LangSmith's client (~70 ms, over a second on a cold disk);
#: LangChain itself imports it only when its first run configures callbacks.
_TRACER_CONTEXT = "langchain_core.tracers.context"


#: Where LangChain's callback managers are defined: with what it imports, most of langchain-core (~300 ms of imports),
#: which ``langchain_core.messages``, ``.prompts`` or ``.tools`` alone do not bring in.
MANAGER_MODULE = "langchain_core.callbacks.manager"
#: Where ``BaseChatModel`` is defined: ~31 ms of imports (LangSmith's run trees among them) that a LangGraph program
#: whose nodes call no LangChain model never makes.
CHAT_MODELS_MODULE = "langchain_core.language_models.chat_models"
#: Where ``BaseLLM`` is defined: a module that imports PyYAML and more (~18 ms of CPU), which a program using only chat
#: models never imports.
COMPLETION_MODELS_MODULE = "langchain_core.language_models.llms"
#: The modules of the model base classes whose entry points are patched (``_patches.patch_models``).
MODEL_MODULES = (CHAT_MODELS_MODULE, COMPLETION_MODELS_MODULE)

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
    """Instrument LangChain once its callback manager is imported: now if it is. A program that imported only
    ``langchain_core.messages`` (or ``.prompts``, ``.tools``) before ``init()`` has not, and ``init()`` does not import
    it for it (~300 ms of LangChain's imports, which the program pays when it first imports a model or a graph)."""
    if _installed or _awaiting_tracer_context or _awaiting_manager:
        return
    _awaiting_manager.append(True)
    # The models' modules watched now, before the program imports them: each is patched when its own import ends, also
    # when that import is what brings in the callback manager (its install runs half way through the models' module).
    for name in MODEL_MODULES:
        client.when_imported(name, _patch_models)
    client.when_imported(MANAGER_MODULE, functools.partial(_install_with_manager, client))


def _patch_models(module: Any) -> None:
    from ._patches import patch_models  # imported with a model's module, not by init()

    patch_models(module)


def _install_with_manager(client: Any, _manager: Any) -> None:
    if not _awaiting_manager:  # uninstrumented meanwhile
        return
    _awaiting_manager.clear()
    from ._handler import AgentWatchHandler
    from ._patches import install

    try:
        install(AgentWatchHandler, client.when_imported)
    finally:  # a patch that failed (logged) leaves the runs traced all the same
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
    _awaiting_manager.clear()
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
