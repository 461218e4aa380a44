"""Entry point: the ``anthropic`` SDK's calls, limits checked in the SDK before anything is sent.

Covers every client pointed at any ``base_url`` (a proxy, vLLM, LM Studio), sync and async, streamed
or not; usage, status and request id come from the HTTP tap the plugin shares with the http plugin.
"""

from __future__ import annotations

from typing import Any

from agentwatch import hookimpl
from agentwatch.plugins.http._patching import Patcher

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("anthropic",)

_OWNER = "anthropic"
_patcher = Patcher()


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    from anthropic import _base_client

    from agentwatch.plugins.http import _sdk, _taps

    _sdk.install(_base_client, _patcher, _OWNER)
    _taps.acquire(_OWNER, client)


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    from agentwatch.plugins.http import _taps

    _patcher.restore()
    _taps.release(_OWNER)
