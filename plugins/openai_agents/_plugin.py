"""Entry point: the OpenAI Agents SDK (``agents``) traced and its model calls guarded.

Light on purpose: the SDK is imported only inside the hooks, which the core calls when ``agents`` is already
imported or as soon as it is.
"""

from __future__ import annotations

import sys
from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("agents",)


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    from ._patch import install

    install()


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    # Nothing to undo if the patch module never loaded (the SDK was not imported in this process).
    patch = sys.modules.get(__name__.rpartition(".")[0] + "._patch")
    if patch is not None:
        patch.uninstall()
