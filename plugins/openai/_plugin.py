"""Entry point: the ``openai`` SDK's calls, limits checked in the SDK before anything is sent.

Covers every client pointed at any ``base_url`` (a proxy, vLLM, LM Studio), sync and async, streamed
or not; usage, status and request id come from the HTTP tap the plugin shares with the http plugin.
"""

from __future__ import annotations

import sys
from typing import Any

from agentwatch import hookimpl
from agentwatch.plugins.http._patching import Patcher

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("openai",)

_OWNER = "openai"
_patcher = Patcher()


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    from openai import _base_client

    from agentwatch.plugins.http import _sdk, _taps

    _guard_httpx2_reads()
    _sdk.install(_base_client, _patcher, _OWNER)
    _taps.acquire(_OWNER, client)


def _guard_httpx2_reads() -> None:
    """Have openai take an ``httpx2`` still being imported for one not imported yet.

    openai reads ``sys.modules["httpx2"]`` on every request (``openai._httpx2._loaded_httpx2``) without the import
    lock. AgentWatch may import genai-prices, which imports httpx2, while other threads call openai: the first price
    of a model its shipped index lacks (a local model) does. A request that found the half-built module failed with
    AttributeError. Importing httpx2 in ``init()`` instead cost ``init()`` 20-70 ms, and every later openai request
    ~4.5k machine instructions (callgrind): with httpx2 loaded, openai tests each client and timeout against it."""
    try:
        from openai import _httpx2
    except ImportError:  # an openai without httpx2 support reads no such module
        return
    if callable(getattr(_httpx2, "_loaded_httpx2", None)):
        _patcher.replace(_httpx2, "_loaded_httpx2", lambda original: _loaded_httpx2)


#: ``sys.modules`` (the one dict the import system fills), bound once: openai asks ``_loaded_httpx2`` several times a
#: request.
_MODULES = sys.modules


def _loaded_httpx2() -> Any:
    """``openai._httpx2._loaded_httpx2``: the httpx2 module, or None while it is not imported, or not completely."""
    module = _MODULES.get("httpx2")
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return None
    return module


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    from agentwatch.plugins.http import _taps

    _patcher.restore()
    _taps.release(_OWNER)
