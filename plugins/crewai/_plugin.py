"""Entry point: zero-config CrewAI tracing and blocking once ``agentwatch.init()`` runs.

Light on purpose: CrewAI is imported only inside the hooks, which the core calls when ``crewai`` is
already imported or as soon as it is.
"""

from __future__ import annotations

from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("crewai",)


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    from ._listener import install

    install()


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    import sys

    # Nothing to undo if the listener module never loaded (CrewAI was not imported in this process).
    listener = sys.modules.get(__name__.rpartition(".")[0] + "._listener")
    if listener is not None:
        listener.uninstall()
