"""Entry point of the AutoGen AgentChat plugin (autogen-core / autogen-agentchat 0.7).

Light on purpose: AutoGen is imported only when ``agentwatch_instrument`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentwatch import hookimpl

if TYPE_CHECKING:
    from agentwatch import Client

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

# autogen-core alone: model clients are used without AgentChat too, and AgentChat's classes are caught
# as they are defined (see ``_patching``), whenever AgentChat is imported.
AGENTWATCH_REQUIRES: tuple[str, ...] = ("autogen_core",)


@hookimpl
def agentwatch_instrument(client: Client) -> None:
    from ._instrument import install

    install()


@hookimpl
def agentwatch_uninstrument(client: Client) -> None:
    from ._instrument import uninstall

    uninstall()
