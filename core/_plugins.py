"""Plugin discovery (entry points), the plugin manager, and the post-import hook for late imports."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from ._entry_points import plugin_entry_points
from ._forking import fork_safe_lock
from ._guarded_hooks import UNGUARDED_HOOKS, guard
from ._safe import logger, stop_on_exception

__all__ = ["PluginManager", "PostImportHooks", "discover", "is_installed"]


class PluginManager(pluggy.PluginManager):
    """pluggy's, with each plugin's hook implementations guarded (``_guarded_hooks``): one plugin's error is logged
    and the hook call goes on without it."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        #: (plugin, hook) of each plugin that failed in ``agentwatch_configure`` or ``agentwatch_instrument``: not
        #: started; the client takes it out (``Client.drop_failed_plugins``).
        self.failed: list[tuple[Any, str]] = []
        self.add_hookspecs(hookspecs)

    def _verify_hook(self, hook: pluggy.HookCaller, hookimpl: pluggy.HookImpl) -> None:
        # pluggy checks each implementation against its spec here, before anything calls it: before a historic hook
        # (agentwatch_instrument) is replayed to a plugin registered late, which a wrapper added after
        # ``register()`` would miss. (A private method of pluggy's, the same from 1.5 to 1.7; the tests of the
        # guard fail if it is no longer called.)
        super()._verify_hook(hook, hookimpl)
        function = hookimpl.function
        if hook.name in UNGUARDED_HOOKS or hookimpl.wrapper or hookimpl.hookwrapper \
                or getattr(function, "_agentwatch_guarded", False):
            return
        hookimpl.function = guard(  # type: ignore[misc]  # Final in pluggy's types; a slot, assigned once here
            hook.name, function, hookimpl.plugin, hookimpl.plugin_name, self.failed)


def required_modules(plugin: Any) -> tuple[str, ...]:
    """A framework plugin names the modules it instruments in ``AGENTWATCH_REQUIRES``."""
    required = getattr(plugin, "AGENTWATCH_REQUIRES", ())
    return (required,) if isinstance(required, str) else tuple(required)


def is_installed(module_name: str) -> bool:
    """Without importing anything: ``find_spec("a.b")`` would import package ``a`` (and a framework's
    package ``__init__`` can take a second), so a submodule is looked up in its parent's search path."""
    if module_name in sys.modules:
        return True
    parent_name, _, _child = module_name.rpartition(".")
    try:
        if not parent_name:
            return importlib.util.find_spec(module_name) is not None
        if parent_name in sys.modules:
            return importlib.util.find_spec(module_name) is not None
        parent = importlib.util.find_spec(parent_name) if "." not in parent_name else None
        if parent is None or parent.submodule_search_locations is None:
            # A deeper name, or a parent we cannot see into: ask whether the top-level package exists.
            return importlib.util.find_spec(module_name.partition(".")[0]) is not None
        found = importlib.machinery.PathFinder.find_spec(module_name, list(parent.submodule_search_locations))
        return found is not None
    except (ImportError, ValueError):
        return False


def discover(disabled: Iterable[str]) -> list[tuple[str, ModuleType | Any]]:
    """Load the entry points of ``agentwatch.plugins``; skip disabled ones and those whose framework is not installed
    quietly, and a plugin that fails to import with a warning naming it (a bug of its own, or a private module of
    AgentWatch's it reached for that changed): it is not used."""
    blocked = set(disabled)
    found: list[tuple[str, Any]] = []
    for entry_point in plugin_entry_points():
        if entry_point.name in blocked:
            logger.debug("agentwatch: plugin %r disabled by configuration", entry_point.name)
            continue
        try:
            plugin = entry_point.load()
        except Exception as error:  # one bad third-party plugin must not stop the others
            logger.warning("agentwatch: plugin %r (%s) failed to import and is not used: %s: %s", entry_point.name,
                           entry_point.value, type(error).__name__, error)
            logger.debug("agentwatch: plugin %r import error", entry_point.name, exc_info=True)
            continue
        missing = [name for name in required_modules(plugin) if not is_installed(name)]
        if missing:
            logger.debug("agentwatch: plugin %r skipped, %s not installed", entry_point.name, ", ".join(missing))
            continue
        found.append((entry_point.name, plugin))
    return found


class _NotifyingLoader:
    """Runs the real loader, then the callbacks; restores the real loader on the module afterwards.
    (Duck-typed like ``importlib.abc.Loader``: importing importlib.abc costs ~10 ms of importlib.resources.)"""

    def __init__(self, loader: Any, fire: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._fire = fire

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        try:
            self._loader.exec_module(module)
        finally:
            if spec is not None:
                spec.loader = self._loader
            module.__loader__ = self._loader
        # Its code has run: imported for the callbacks (``imported_module``), though the import machinery marks it so
        # only once this returns.
        ran = _ran_here()
        ran.add(module.__name__)
        try:
            self._fire(module)
        finally:
            ran.discard(module.__name__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


#: Per thread, the watched modules whose code has run and whose callbacks are being called (``_NotifyingLoader``).
_ran = threading.local()


def _ran_here() -> set[str]:
    names: set[str] | None = getattr(_ran, "names", None)
    if names is None:
        names = _ran.names = set()
    return names


def imported_module(module_name: str) -> ModuleType | None:
    """The module if its import has completed; None if it is not imported, or still being imported (in
    ``sys.modules`` while its code runs: an import of one of its own imports led here, and the names it defines
    after that import do not exist yet). A watched module whose code has run is imported for its callbacks."""
    module = sys.modules.get(module_name)
    if module is None:
        return None
    if getattr(getattr(module, "__spec__", None), "_initializing", False) and module_name not in _ran_here():
        return None
    return module


class PostImportHooks:
    """Calls back when a watched module is imported after ``init()``; removed by ``uninstall()``."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
        #: Watched modules that were still being imported when asked for, by an import this finder did not see begin:
        #: their callbacks run at the first import of any module after theirs completed (``find_spec``).
        self._half_imported: set[str] = set()
        self._lock = fork_safe_lock(self)
        self._searching = threading.local()

    def when_imported(self, module_name: str, callback: Callable[[ModuleType], None]) -> None:
        module = imported_module(module_name)
        if module is None and module_name in sys.modules:
            # Being imported. By another thread: this waits for that import to end, and the module is imported then.
            # By this one (the module's own import led here): this returns it as it is so far, and it is watched.
            with contextlib.suppress(Exception):
                importlib.import_module(module_name)
            module = imported_module(module_name)
        if module is not None:
            stop_on_exception(callback)(module)
            return
        with self._lock:
            self._callbacks.setdefault(module_name, []).append(callback)
            if module_name in sys.modules:  # being imported: if its loader is ours, it calls back when done
                self._half_imported.add(module_name)
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        with self._lock:
            self._callbacks.clear()
            self._half_imported.clear()
            if self in sys.meta_path:
                sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if self._half_imported:
            self._fire_completed()
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
        spec.loader = _NotifyingLoader(spec.loader, self._fire)  # type: ignore[assignment]
        return spec

    def _fire_completed(self) -> None:
        """Call back for the watched modules that were half-imported when asked for and whose import has completed
        since (one that failed and left ``sys.modules`` waits for the next attempt, as a module never imported)."""
        with self._lock:
            done = [name for name in self._half_imported
                    if imported_module(name) is not None or name not in sys.modules]
            self._half_imported.difference_update(done)
        for name in done:
            module = imported_module(name)
            if module is not None:
                self._fire(module)

    def _fire(self, module: ModuleType) -> None:
        with self._lock:
            self._half_imported.discard(module.__name__)
            callbacks = self._callbacks.pop(module.__name__, [])
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)
        for callback in callbacks:
            stop_on_exception(callback)(module)
