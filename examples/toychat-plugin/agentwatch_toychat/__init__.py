"""AgentWatch plugin for toychat: the entry-point module (``agentwatch.plugins`` group, see pyproject.toml).

Kept light: ``agentwatch.init()`` imports the entry module of every installed plugin, so toychat itself is
imported only in ``agentwatch_instrument``, which AgentWatch calls once toychat is imported (at ``init()`` if it
already is, else when the program imports it).
"""

from __future__ import annotations

from typing import Any

from agentwatch.instrumentation import Client, hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

#: The module this plugin instruments: without it installed the plugin is skipped, quietly.
AGENTWATCH_REQUIRES = ("toychat",)

_installed: list[Any] = []


@hookimpl
def agentwatch_instrument(client: Client) -> None:
    import toychat

    from ._handler import AgentWatchHandler

    if not _installed:
        handler = AgentWatchHandler()
        toychat.handlers.append(handler)
        _installed.append(handler)


@hookimpl
def agentwatch_uninstrument(client: Client) -> None:
    """After ``shutdown()`` toychat behaves as if AgentWatch had never been there."""
    import toychat

    while _installed:
        handler = _installed.pop()
        if handler in toychat.handlers:
            toychat.handlers.remove(handler)
