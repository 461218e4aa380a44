"""A warning raised under one of AgentWatch's wrappers names the line it names without AgentWatch.

A framework warns about its caller's call with ``warnings.warn(..., stacklevel=2)`` (AutoGen's model client on a
model mismatch or a deprecated argument). Where AgentWatch wraps that method, the frame ``stacklevel`` levels up is
AgentWatch's wrapper: the warning named AgentWatch's file, the ``default`` action showed it once for every call
site together (once per location), a filter on the program's module no longer matched, and a
``DeprecationWarning`` triggered in ``__main__`` was hidden (it is shown only there). From ``init()`` to
``shutdown()``, ``warnings.warn`` counts its levels past AgentWatch's own frames, so it reaches the frame it reaches
without them. The walk happens only when a warning is raised: a program that never warns pays nothing.
AgentWatch itself does not warn (it logs), so a warning never starts in one of its frames.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import warnings
from _warnings import warn as _C_WARN  # type: ignore[import-not-found]
from collections.abc import Callable
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType
from typing import Any

__all__ = ["install", "uninstall"]

_lock = threading.Lock()
_original: Callable[..., None] | None = None
#: ``_original`` while calling it can never call ours again (``_may_call_ours``), else None: the usual warning then
#: goes straight to it, without the re-entry guard.
_direct: Callable[..., None] | None = None
_BEFORE_US = warnings.warn  # what a stale reference to ours calls after uninstall (never ours: no recursion)
#: Set on a thread while ``_warn`` runs there. A wrapper made while ours was installed calls ours (crewai's, made at its
#: import); after ``shutdown()`` and ``init()`` ours calls that wrapper in turn, which would call ours again, forever.
class _Inside(threading.local):
    warning = False  # read as a plain attribute on every warning (no getattr() with a default)


_inside = _Inside()


def _package_dir(module_file: str) -> str:
    return os.path.dirname(module_file) + os.sep


def _prefixes() -> tuple[str, ...]:
    """The folders of the core and of the framework plugins (the wrappers), wherever they are installed."""
    plugins = importlib.util.find_spec("agentwatch.plugins")
    found = [_package_dir(__file__)]
    if plugins is not None and plugins.origin:
        found.append(_package_dir(plugins.origin))
    return tuple(found)


_OURS: tuple[str, ...] = ()
_getframe = sys._getframe


def _level_past_our_frames(caller: FrameType, stacklevel: int) -> int:
    """The stack level, from ``caller`` (1), of the frame ``stacklevel`` reaches when our frames are not counted.

    The import machinery's frames are passed over without counting, as warnings itself does
    (``warnings._is_internal_frame``). Checks written in the loop, not called: a framework may warn dozens of times a
    call (CrewAI: ~38 deprecation warnings per LLM call, ignored by the program's filters)."""
    level, remaining, frame, ours = 1, stacklevel - 1, caller, _OURS
    while remaining > 0:
        outer = frame.f_back
        if outer is None:  # past the outermost frame: warnings names module ``sys``, as it would without us
            return level + remaining
        frame = outer
        filename = frame.f_code.co_filename
        if "importlib" in filename and "_bootstrap" in filename:
            continue
        level += 1
        if not filename.startswith(ours):
            remaining -= 1
    return level


#: Files whose frames ``warnings`` counts when it walks ``stacklevel`` up (not ours, not the import machinery's), as
#: seen so far: a set lookup per warning instead of a prefix test and two substring searches (~600 machine
#: instructions; pydantic's deprecation warnings come ~30 times per CrewAI LLM call). Bounded: a file past the bound is
#: tested each time.
_COUNTED: set[str] = set()
_COUNTED_MAX = 4096


def _counted(filename: str) -> bool:
    """Whether ``warnings`` counts a frame of ``filename`` (remembered in ``_COUNTED`` if it does)."""
    counted = not filename.startswith(_OURS) and not ("importlib" in filename and "_bootstrap" in filename)
    if counted and len(_COUNTED) < _COUNTED_MAX:
        _COUNTED.add(filename)
    return counted


def _caller_level(stacklevel: int) -> int:
    """The ``stacklevel`` to pass on, counted from ``_warn``'s caller (1) without our frames (``_warn`` adds one)."""
    if stacklevel <= 1:
        return 1
    caller = _getframe(2)  # 0: this function, 1: _warn, 2: the code that warned
    # (stacklevel=2 with a caller warnings counts is answered by _warn before it asks here)
    if caller.f_code.co_filename.startswith(_OURS):
        return stacklevel
    try:
        return _level_past_our_frames(caller, stacklevel)
    except Exception:  # noqa: BLE001 - a warning must still be raised as asked; the level is then as before
        return stacklevel


def _warn(message: Any, category: Any = None, stacklevel: int = 1, source: Any = None, **kwargs: Any) -> None:
    # The usual warning first: stacklevel=2, the frame it names (its caller's caller) in a file warnings counts (neither
    # ours nor the import machinery's), passed on one level up (this frame) to a function that cannot call ours again.
    # Pydantic's model_fields deprecation fires ~38 times per CrewAI LLM call, each one dropped by crewai's own
    # wrapper: 60 bytecodes of ours a warning through the re-entry guard, 34 here (~1.3 -> ~0.35 µs a warning).
    direct = _direct
    if stacklevel == 2 and direct is not None and not kwargs:
        try:
            counted = _getframe(2).f_code.co_filename in _COUNTED  # 0: this function, 1: the code that warned
        except ValueError:  # warned from the outermost frame: no frame two levels up
            counted = False
        if counted:
            direct(message, category, 3, source)
            return
    # The level to pass on, past our frames: the usual warning (stacklevel=2, its caller's file neither ours nor the
    # import machinery's) answered here rather than by _caller_level (a frame fewer). Callgrind, an ignored stacklevel=2
    # warning, over none: ~12k machine instructions with the re-entry guard and the level in frames of their own, ~4.5k
    # without the guard, ~2.8k with the level here and the files in _COUNTED.
    level = 0
    if stacklevel == 2:
        outer = _getframe(1).f_back  # 0: this function, 1: the code that warned, 2: its caller
        if outer is not None:
            filename = outer.f_code.co_filename
            if filename in _COUNTED or _counted(filename):
                level = 3  # 2 + 1: this frame
    original = _original or _BEFORE_US
    if original is _C_WARN and not kwargs:
        # warnings' own function is what ours replaced, with nothing to pass on by keyword: nothing it calls can call
        # ours again, so no re-entry to guard against.
        original(message, category, level or _caller_level(stacklevel) + 1, source)  # + 1: this frame
        return
    if _inside.warning:  # called again by a wrapper ours called (one made while ours was installed: crewai's)
        _BEFORE_US(message, category, stacklevel + 1, source, **kwargs)  # + 1: this frame; the level is counted already
        return
    if "skip_file_prefixes" in kwargs:
        _skipping_ours(original, message, category, stacklevel, source, kwargs)
        return
    if not level:
        level = _caller_level(stacklevel) + 1  # + 1: this frame
    _inside.warning = True
    try:
        if kwargs:
            original(message, category, level, source, **kwargs)
        else:
            original(message, category, level, source)
    finally:
        _inside.warning = False


def _skipping_ours(original: Callable[..., None], message: Any, category: Any, stacklevel: int, source: Any,
                   kwargs: dict[str, Any]) -> None:
    """Python 3.12+'s ``skip_file_prefixes``: warnings skips the frames of the files it is given; give it ours too."""
    _inside.warning = True
    try:
        prefixes = kwargs["skip_file_prefixes"]
        if sys.version_info < (3, 12) or not isinstance(prefixes, tuple):  # the original's own error, as without us
            original(message, category, stacklevel, source, **kwargs)
            return
        kwargs["skip_file_prefixes"] = prefixes + _OURS
        # + 1: this frame, the first level (warnings skips the prefixes' frames only from the second on, _warn's too)
        original(message, category, stacklevel + 1, source, **kwargs)
    finally:
        _inside.warning = False


#: Functions ``_may_call_ours`` looks into at most: past that, the wrapper is taken as one that may call ours.
_SEARCHED_MAX = 64


def _may_call_ours(function: Any) -> bool:
    """Whether calling ``function`` (what ``warnings.warn`` is when ours replaces it) may call ours again: it is ours,
    or a function that holds ours (a library wrapped ``warnings.warn`` while ours was installed, before a
    ``shutdown()`` and this ``init()``) in its closure, its defaults or the globals its code names (a lambda's in it
    too), itself or through another function it holds that way; or it is, or holds, a callable whose holdings are not
    looked into (an object, a partial, a bound method). Calling ``warnings.warn`` by its name would recurse without
    AgentWatch too: no wrapper does."""
    pending: list[Any] = [function]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is _warn:
            return True
        if current is _C_WARN or id(current) in seen:
            continue
        if current.__class__ is not FunctionType or len(seen) >= _SEARCHED_MAX:
            return True
        seen.add(id(current))
        namespace = current.__globals__
        names: set[str] = set()
        codes = [current.__code__]
        while codes:  # its own code and the functions and lambdas defined in it, which read the same globals
            code = codes.pop()
            names.update(code.co_names)
            codes.extend(constant for constant in code.co_consts if constant.__class__ is CodeType)
        held: list[Any] = [namespace[name] for name in names if name in namespace]
        for cell in current.__closure__ or ():
            try:
                held.append(cell.cell_contents)
            except ValueError:  # a cell not filled yet
                continue
        held.extend(current.__defaults__ or ())
        held.extend((current.__kwdefaults__ or {}).values())
        for value in held:
            if value.__class__ is FunctionType:  # ours among them
                pending.append(value)
            elif callable(value) and not isinstance(value, type | BuiltinFunctionType):
                return True
    return False


def install() -> None:
    global _original, _OURS, _direct
    with _lock:
        if _original is not None:
            return
        _OURS = _prefixes()
        _COUNTED.clear()  # judged against the folders found now
        _original = warnings.warn
        _direct = None if _may_call_ours(_original) else _original
        warnings.warn = _warn  # type: ignore[assignment]


def uninstall() -> None:
    """Put ``warnings.warn`` back, unless the program replaced ours since (then its replacement stays)."""
    global _original, _direct
    with _lock:
        if _original is None:
            return
        if warnings.warn is _warn:
            warnings.warn = _original  # type: ignore[assignment]
        _original = _direct = None
