"""Entry point: the ``openai`` SDK's calls, limits checked in the SDK before anything is sent.

Covers every client pointed at any ``base_url`` (a proxy, vLLM, LM Studio), sync and async, streamed
or not; usage, status and request id come from the HTTP tap the plugin shares with the http plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from agentwatch import hookimpl
from agentwatch.plugins.http._patching import Patcher

__all__ = ["AGENTWATCH_REQUIRES", "agentwatch_instrument", "agentwatch_uninstrument"]

AGENTWATCH_REQUIRES = ("openai",)

_OWNER = "openai"
_patcher = Patcher()


@hookimpl
def agentwatch_instrument(client: Any) -> None:
    _finish_importing_httpx2()
    from openai import _base_client

    from agentwatch.plugins.http import _sdk, _taps

    _sdk.install(_base_client, _patcher, _OWNER)
    _taps.acquire(_OWNER, client)


def _finish_importing_httpx2() -> None:
    """Import httpx2 here, on the thread that calls init(), before the user's first call.

    genai-prices (a core dependency) imports httpx2 on the export worker right after init(). openai reads
    ``sys.modules["httpx2"]`` on every request without taking the import lock, so a call made during that
    import sees a half-built module and fails with AttributeError. An ``import`` here either does the
    work first or waits until the worker's import is complete.
    """
    if importlib.util.find_spec("httpx2") is not None:
        importlib.import_module("httpx2")


@hookimpl
def agentwatch_uninstrument(client: Any) -> None:
    from agentwatch.plugins.http import _taps

    _patcher.restore()
    _taps.release(_OWNER)
