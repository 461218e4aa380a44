"""Plugin discovery (entry points), the plugin manager, and the post-import hook for late imports."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from ._safe import logger, stop_on_exception

__all__ = ["PluginManager", "ENTRY_POINT_GROUP", "PostImportHooks"]

ENTRY_POINT_GROUP = "agentwatch.plugins"


class PluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)


def required_modules(plugin: Any) -> tuple[str, ...]:
    """A framework plugin names the modules it instruments in ``AGENTWATCH_REQUIRES``."""
    required = getattr(plugin, "AGENTWATCH_REQUIRES", ())
    return (required,) if isinstance(required, str) else tuple(required)


def is_installed(module_name: str) -> bool:
    if module_name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def discover(disabled: Iterable[str]) -> list[tuple[str, ModuleType | Any]]:
    """Load the entry points of ``agentwatch.plugins``; skip blocked ones and broken ones, quietly."""
    from importlib.metadata import entry_points  # slow to import; only init() needs it

    blocked = set(disabled)
    found: list[tuple[str, Any]] = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in blocked:
            logger.debug("agentwatch: plugin %r disabled by configuration", entry_point.name)
            continue
        try:
            plugin = entry_point.load()
        except Exception as error:  # one bad third-party plugin must not stop the others
            logger.debug("agentwatch: plugin %r failed to load: %s", entry_point.name, error)
            continue
        missing = [name for name in required_modules(plugin) if not is_installed(name)]
        if missing:
            logger.debug("agentwatch: plugin %r skipped, %s not installed", entry_point.name, ", ".join(missing))
            continue
        found.append((entry_point.name, plugin))
    return found


class _NotifyingLoader(importlib.abc.Loader):
    """Runs the real loader, then the callbacks; restores the real loader on the module afterwards."""

    def __init__(self, loader: importlib.abc.Loader, fire: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._fire = fire

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        try:
            self._loader.exec_module(module)
        finally:
            if spec is not None:
                spec.loader = self._loader
            module.__loader__ = self._loader
        self._fire(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class PostImportHooks(importlib.abc.MetaPathFinder):
    """Calls back when a watched module is imported after ``init()``; removed by ``uninstall()``."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self._lock = threading.Lock()
        self._searching = threading.local()

    def when_imported(self, module_name: str, callback: Callable[[ModuleType], None]) -> None:
        module = sys.modules.get(module_name)
        if module is not None:
            stop_on_exception(callback)(module)
            return
        with self._lock:
            self._callbacks.setdefault(module_name, []).append(callback)
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        with self._lock:
            self._callbacks.clear()
            if self in sys.meta_path:
                sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._callbacks or getattr(self._searching, fullname, False):
            return None
        setattr(self._searching, fullname, True)
        try:
            spec = importlib.util.find_spec(fullname)
        except (ImportError, ValueError):
            return None
        finally:
            setattr(self._searching, fullname, False)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _NotifyingLoader(spec.loader, self._fire)
        return spec

    def _fire(self, module: ModuleType) -> None:
        with self._lock:
            callbacks = self._callbacks.pop(module.__name__, [])
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)
        for callback in callbacks:
            stop_on_exception(callback)(module)
