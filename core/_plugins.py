"""Plugin discovery (entry points), the plugin manager, and the post-import hook for late imports."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from ._forking import fork_safe_lock
from ._guarded_hooks import UNGUARDED_HOOKS, guard
from ._safe import logger, stop_on_exception

__all__ = ["PluginManager", "ENTRY_POINT_GROUP", "PostImportHooks", "entry_points_of", "plugin_entry_points",
           "discover", "is_installed", "distributions", "normalize"]

ENTRY_POINT_GROUP = "agentwatch.plugins"


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


class _EntryPoint:
    """The part of ``importlib.metadata.EntryPoint`` that discovery uses: ``module:attr`` loaded on demand."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def load(self) -> Any:
        module_name, _, attribute = self.value.partition(":")
        module: Any = importlib.import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            module = getattr(module, part)
        return module


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` lines of ``[group]`` in an ``entry_points.txt`` (an INI file without interpolation)."""
    found: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            inside = line == f"[{group}]"
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()  # extras, as importlib.metadata ignores them for loading
            found.append((name.strip(), value))
    return found


def normalize(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503, with ``.`` and ``_`` as ``-``)."""
    return name.lower().replace("_", "-").replace(".", "-")


def distributions() -> Iterator[tuple[str, str]]:
    """(normalized name, metadata directory) of every distribution on ``sys.path``; the first of a name wins,
    as with ``importlib.metadata``, which this replaces where only a file or two is wanted: importing it (with
    email, zipfile and csv) costs ~40 ms, and it builds a ``Distribution`` per installed package."""
    seen: set[str] = set()
    for directory in sys.path:
        try:
            entries = os.scandir(directory or ".")
        except OSError:  # a zip file or a missing directory: no plain dist-info to read there
            continue
        with entries:
            names = sorted(entry.name for entry in entries if entry.name.endswith((".dist-info", ".egg-info")))
        for name in names:
            distribution = normalize(name.rpartition(".")[0].partition("-")[0])
            if distribution not in seen:
                seen.add(distribution)
                yield distribution, os.path.join(directory or ".", name)


def entry_points_of(group: str) -> list[_EntryPoint]:
    """The entry points of ``group`` in every distribution on ``sys.path``, as
    ``importlib.metadata.entry_points(group=...)`` finds them; only files that mention the group are parsed."""
    needle = group.encode()
    found: list[_EntryPoint] = []
    for _name, path in distributions():
        try:
            with open(os.path.join(path, "entry_points.txt"), "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        if needle in data:
            text = data.decode("utf-8", "replace")
            found += [_EntryPoint(ep_name, value) for ep_name, value in _section(text, group)]
    return found


# The scan opens every distribution's metadata directory (~500 with every framework installed: ~3 ms of init()).
# Its result for ``agentwatch.plugins`` is kept in a per-user file, valid while every ``sys.path`` directory has
# the modification time it had then: installing, upgrading or removing a distribution adds or renames a
# ``*.dist-info`` directory there, which changes it. A directory modified in the last seconds is not trusted
# (a coarse file-system clock could hide a change made within the same tick): the scan runs and is not kept.
_CACHE_VERSION = "agentwatch entry points 1"
_SETTLED_NS = 2_000_000_000


def _path_signature() -> list[str] | None:
    """``mtime_ns path`` of each ``sys.path`` entry (-1: missing); None if one changed just now."""
    import time

    now = time.time_ns()
    rows = []
    for directory in sys.path:
        try:
            modified = os.stat(directory or ".").st_mtime_ns
        except OSError:
            modified = -1
        if now - modified < _SETTLED_NS:
            return None
        rows.append(f"{modified} {directory}")
    return rows


def _cache_path() -> str:
    from ._spool import user_cache_dir

    return os.path.join(user_cache_dir(), "entry-points.txt")


def _cached_entry_points(signature: list[str]) -> list[_EntryPoint] | None:
    try:
        with open(_cache_path(), encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, ValueError):
        return None
    head, _, body = text.partition("\n\n")
    if head != "\n".join([_CACHE_VERSION, *signature]):
        return None
    return [_EntryPoint(*line.split("\t", 1)) for line in body.splitlines() if "\t" in line]


def _keep_entry_points(signature: list[str], found: list[_EntryPoint]) -> None:
    path = _cache_path()
    temporary = f"{path}.{os.getpid()}.tmp"
    body = "".join(f"{entry.name}\t{entry.value}\n" for entry in found)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("\n".join([_CACHE_VERSION, *signature]) + "\n\n" + body)
        os.replace(temporary, path)  # whole, or not at all, for a process reading it meanwhile
    except OSError:  # a read-only home: scan every time
        try:
            os.unlink(temporary)
        except OSError:
            pass


def plugin_entry_points() -> list[_EntryPoint]:
    """``entry_points_of("agentwatch.plugins")``, from the per-user cache when no ``sys.path`` directory changed."""
    signature = _path_signature()
    if signature is not None:
        cached = _cached_entry_points(signature)
        if cached is not None:
            return cached
    found = entry_points_of(ENTRY_POINT_GROUP)
    if signature is not None:
        _keep_entry_points(signature, found)
    return found


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
        self._fire(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def imported_module(module_name: str) -> ModuleType | None:
    """The module if its import has completed; None if it is not imported, or still being imported (in
    ``sys.modules`` while its code runs: an import of one of its own imports led here, and the names it defines
    after that import do not exist yet)."""
    module = sys.modules.get(module_name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
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
