"""Entry point: ``concurrent.futures.ThreadPoolExecutor.submit`` carries AgentWatch's values to the worker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentwatch import hookimpl
from agentwatch.instrumentation import carry
from agentwatch.plugins.http._patching import Patcher

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES: tuple[str, ...] = ()  # the standard library's

_patcher = Patcher()


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    if client.config.auto_instrument:
        _patcher.replace(ThreadPoolExecutor, "submit", _carrying)


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    _patcher.restore()


def _carrying(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        values = carry()  # None outside any span, agent scope or run budget: the work goes as it is
        if values is None:
            return original(self, fn, *args, **kwargs)
        return original(self, values.run, fn, *args, **kwargs)

    return submit
