"""LlamaIndex: spans for query and chat engines, retrievers, embeddings, LLM calls, tools, agents and
workflows; limits checked before every LLM and embedding request.

Zero-config after ``agentwatch.init()``. Explicitly: ``instrument()`` (e.g. with
``init(auto_instrument=False)``), or per LLM ``CallbackManager([AgentWatchCallbackHandler()])``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Loaded on first use (PEP 562): the entry module ``_plugin`` lives in this package, so anything imported
# here is imported by ``agentwatch.init()`` itself, and importing LlamaIndex there would take seconds and
# defeat instrumenting it only when the application imports it.
_EXPORTS = {
    "AgentWatchCallbackHandler": ("._callback", "AgentWatchCallbackHandler"),
    "AgentWatchEventHandler": ("._events", "AgentWatchEventHandler"),
    "AgentWatchSpanHandler": ("._spans", "AgentWatchSpanHandler"),
    "instrument": ("._instrument", "install"),
    "uninstrument": ("._instrument", "remove"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    # First, on its own: if AgentWatch is running, this import instruments LlamaIndex, which imports this
    # package's modules; none of them may be half-imported at that moment.
    import_module("llama_index.core")
    value = getattr(import_module(module_name, __name__), attribute)
    globals()[name] = value
    return value


__all__ = ["AgentWatchCallbackHandler", "AgentWatchSpanHandler", "AgentWatchEventHandler", "instrument",
           "uninstrument"]
