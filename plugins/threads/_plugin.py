"""Entry point: ``concurrent.futures.ThreadPoolExecutor.submit`` carries AgentWatch's values to the worker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import Context
from functools import partial
from types import ModuleType
from typing import Any

from agentwatch import hookimpl
from agentwatch.instrumentation import carry
from agentwatch.plugins.http._patching import Patcher

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES: tuple[str, ...] = ()  # the standard library's

_patcher = Patcher()
#: ``ThreadPoolExecutor``'s module: patched when the program (or asyncio's first ``run_in_executor``) imports it, not by
#: ``init()`` (~1.5 ms of imports).
_POOL_MODULE = "concurrent.futures.thread"


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    if client.config.auto_instrument:
        client.when_imported(_POOL_MODULE, _patch_pool)


def _patch_pool(module: ModuleType) -> None:
    _patcher.replace(module.ThreadPoolExecutor, "submit", _carrying)


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    _patcher.restore()


def _carrying(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__self__", None).__class__ is Context or (
                fn.__class__ is partial and getattr(fn.func, "__self__", None).__class__ is Context):
            # A context's own run (CrewAI's event bus submits ``copy_context().run``, ``asyncio.to_thread`` a partial of
            # it: ~20 a CrewAI LLM call): the work runs in that context, which our values set around it would not
            # reach; it holds the values it was copied with. Nothing to ask ``carry`` (~2.8k machine instructions).
            return original(self, fn, *args, **kwargs)
        values = carry()  # None outside any span, agent scope or run budget: the work goes as it is
        if values is None:
            return original(self, fn, *args, **kwargs)
        return original(self, values.run, fn, *args, **kwargs)

    return submit
