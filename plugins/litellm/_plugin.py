"""Entry point: ``litellm.completion``/``acompletion``/``embedding``/``text_completion`` and the ``Router``.

Light on purpose: LiteLLM takes seconds to import, so it is imported only inside the hooks, which the core
calls when ``litellm`` is already imported or as soon as it is.
"""

from __future__ import annotations

import sys
from typing import Any

from agentwatch import hookimpl

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("litellm",)


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    from ._patch import install

    install(client.when_imported)


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    # Nothing to undo if the patch module never loaded (LiteLLM was not imported in this process).
    patch = sys.modules.get(__name__.rpartition(".")[0] + "._patch")
    if patch is not None:
        patch.uninstall()
