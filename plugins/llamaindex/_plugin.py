"""Entry point: zero-config LlamaIndex tracing and limits once ``llama_index.core`` is imported.

Observes through LlamaIndex's instrumentation dispatcher (span and event handlers on the root
dispatcher) and blocks through its legacy callback manager, the one place a raise before the LLM
request reaches the caller.
"""

from __future__ import annotations

from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("llama_index.core",)


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    from ._instrument import install

    install(client.when_imported)


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    from ._instrument import remove

    remove()
