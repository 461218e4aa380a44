"""The transport taps, installed once for every plugin that wants them (http, openai, anthropic).

Each library is patched when it is imported (now, or later through the client's import hook) and
restored when the last plugin lets go, so ``shutdown()`` leaves httpx, requests and aiohttp untouched.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from agentwatch.instrumentation import ProviderTable, logger, providers_of

from ._patching import Patcher
from ._settings import settings

__all__ = ["acquire", "release", "LIBRARIES"]

#: Library -> the module of ours that taps it, imported when the library is (not at init()).
LIBRARIES: dict[str, str] = {
    "httpx": "_httpx",
    "httpx2": "_httpx",  # openai 3.x and anthropic 2.x send through httpx2
    "requests": "_requests",
    "aiohttp": "_aiohttp",
}


def _installer(name: str) -> Callable[[ModuleType, Patcher], None]:
    return importlib.import_module(f"{__package__}.{LIBRARIES[name]}").install  # type: ignore[no-any-return]


def _forget_providers() -> None:
    sdk = sys.modules.get(f"{__package__}._sdk")  # not imported yet: it has nothing to forget
    if sdk is not None:
        sdk.forget_providers()

_lock = threading.RLock()
_owners: set[str] = set()
_patchers: dict[str, Patcher] = {}


def acquire(owner: str, client: Any) -> None:
    """Tap every HTTP library for ``owner``: those imported now at once, the others when imported."""
    with _lock:
        _owners.add(owner)
        settings.providers = providers_of(client)
        _forget_providers()
    for name in LIBRARIES:
        client.when_imported(name, _on_import)


def release(owner: str) -> None:
    with _lock:
        _owners.discard(owner)
        if _owners:
            return
        for patcher in _patchers.values():
            patcher.restore()
        _patchers.clear()
        settings.providers = ProviderTable()
        _forget_providers()


def _on_import(module: ModuleType) -> None:
    name = module.__name__
    # A module another thread is still importing is already in sys.modules, half built (the export
    # worker imports httpx2 through genai-prices). import_module waits for that import to finish; for the
    # importing thread itself it returns at once. Never called with _lock held: that could deadlock.
    module = importlib.import_module(name)
    with _lock:
        if not _owners or name in _patchers:
            return
        patcher = Patcher()
        try:
            _installer(name)(module, patcher)
        except Exception:  # a library version we do not know: leave it as it was
            patcher.restore()
            logger.warning("agentwatch: could not instrument %s; its LLM calls are not traced", name,
                           exc_info=True)
            return
        _patchers[name] = patcher
