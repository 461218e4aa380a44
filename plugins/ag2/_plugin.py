"""Entry point of the classic AG2 plugin (``from autogen import ConversableAgent``).

Light on purpose: ``autogen`` is imported only when ``agentwatch_instrument`` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentwatch import hookimpl

if TYPE_CHECKING:
    from agentwatch import Client

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES: tuple[str, ...] = ("autogen",)


@hookimpl
def agentwatch_instrument(client: Client) -> None:
    from ._instrument import install

    install()


@hookimpl
def agentwatch_uninstrument(client: Client) -> None:
    from ._instrument import uninstall

    uninstall()
