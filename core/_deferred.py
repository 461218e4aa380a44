"""Work a finaliser hands over instead of doing it: ending the call of a stream that was dropped unfinished.

A stream left by ``break`` without ``close()`` is often cyclic garbage (the openai SDK's ``Stream``, LiteLLM's
wrapper), finalised by the garbage collector at whatever allocation triggers it, perhaps while this very thread holds
a lock that ending a call takes (a monitor's, the export queue's): ending it there would hang the program. So
``__del__`` only reads what it must and ``defer``s the rest, which runs at the next safe point: before the next LLM
call is checked (the dropped call's cost counts in that check), at the export worker's next wake-up, at ``flush()``
and ``shutdown()``.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from collections.abc import Callable
from threading import get_ident

from ._forking import fork_safe_lock
from ._safe import swallow_internal_error

__all__ = ["collecting_garbage", "defer", "install", "pending", "run_deferred", "uninstall", "unwatch", "watch"]

#: Appended to by finalisers (``deque.append`` is atomic and takes no lock), emptied by ``run_deferred``.
pending: deque[Callable[[], None]] = deque()

#: The thread running a collection, or None. One at a time: CPython starts no collection while one runs, though a
#: finaliser may release the GIL and let other threads run (their code is no finaliser: they go on as usual).
_collector: int | None = None


def collecting_garbage() -> bool:
    """Whether this thread is in a garbage collection: code called now may be a finaliser (``__del__``, a
    generator's ``finally`` or ``except GeneratorExit``, a ``close()`` called from them) and must ``defer`` what
    takes a lock. Known between ``init()`` and ``shutdown()`` while collections are watched (``watch``): AgentWatch
    watches them while a response stream it reads is open; False otherwise."""
    return _collector is not None and _collector == get_ident()


def _on_collection(phase: str, info: dict[str, int]) -> None:
    global _collector
    _collector = get_ident() if phase == "start" else None


#: A callback in ``gc.callbacks`` costs every collection of the program ~0.65 µs (CPython builds its info and calls it
#: at the start and at the end; ~0.05 µs without): an openai call sets off two or three young collections. So it is
#: there only while code a finaliser may run is open (``watch``), between ``install`` and ``uninstall``.
_watchers = 0
_installed = False
_lock = fork_safe_lock(sys.modules[__name__])


def _hook() -> None:
    global _collector
    if _on_collection not in gc.callbacks:
        _collector = None  # a stop missed while unwatched; no collection runs in this thread now
        gc.callbacks.append(_on_collection)


def _unhook() -> None:
    # _collector is left as it is: a collection running in another thread meanwhile still knows it is one.
    while _on_collection in gc.callbacks:
        gc.callbacks.remove(_on_collection)


def install() -> None:
    global _installed
    with _lock:
        _installed = True
        if _watchers:
            _hook()


def uninstall() -> None:
    global _collector, _installed
    with _lock:
        _installed = False
        _unhook()
        _collector = None


def watch() -> None:
    """Code a finaliser may run is open (a response stream being read): watch collections until ``unwatch``."""
    global _watchers
    with _lock:
        _watchers += 1
        if _watchers == 1 and _installed:
            _hook()


def unwatch() -> None:
    """What ``watch`` opened has ended (its finaliser will not run it); the last one stops the watch."""
    global _watchers
    with _lock:
        if _watchers:
            _watchers -= 1
            if not _watchers:
                _unhook()


def defer(work: Callable[[], None]) -> None:
    """Run ``work`` at the next safe point (see the module's docstring). Safe to call from ``__del__``."""
    pending.append(work)


def run_deferred() -> None:
    """Run what finalisers handed over; an internal error of one is logged and the rest still run. Called where this
    thread holds none of AgentWatch's locks."""
    while pending:
        try:
            work = pending.popleft()
        except IndexError:  # another thread took the last one
            return
        try:
            work()
        except Exception:
            swallow_internal_error("deferred work")
