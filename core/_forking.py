"""Locks that a forked child gets back released, and forks that wait for the export worker's imports.

A lock that another thread holds at the moment of a fork stays held in the child, where that thread does not exist:
the child's first call that needs it waits forever (a thread in the middle of an LLM call holds its monitor's lock
while the main thread forks a worker pool). ``fork_safe_lock`` makes a lock and has every forked child put a new one
in its place on its owner: an object, or a module for a module-level lock.

A module the export worker is importing when another thread forks stays half imported in the child, in
``sys.modules``, with its import lock held by a thread the child does not have: the program's own ``import`` of it
fails there or hangs. The worker does its deferred imports ``with importing():`` (at its start, and before its
first export), and a fork waits for that (at most ``FORK_WAIT`` seconds: a program forking while it holds an import
the worker needs is not deadlocked).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

__all__ = ["fork_safe_lock", "after_fork_in_child", "importing", "FORK_WAIT"]

#: How long a fork waits for the export worker's imports to finish.
FORK_WAIT = 2.0
_importing = threading.Lock()
_held_for_fork = False

_L = TypeVar("_L")

#: Owner -> {attribute: factory}. Weak: an owner that is gone needs no new lock.
_owners: weakref.WeakKeyDictionary[Any, dict[str, Callable[[], Any]]] = weakref.WeakKeyDictionary()
_owners_lock = threading.Lock()
_callbacks: list[Callable[[], None]] = []


@overload
def fork_safe_lock(owner: object, attribute: str = "_lock") -> threading.Lock: ...


@overload
def fork_safe_lock(owner: object, attribute: str, factory: Callable[[], _L]) -> _L: ...


def fork_safe_lock(owner: object, attribute: str = "_lock", factory: Callable[[], Any] = threading.Lock) -> Any:
    """A new ``factory()`` lock for ``owner.<attribute>``, replaced by a new one in a forked child."""
    with _owners_lock:
        _owners.setdefault(owner, {})[attribute] = factory
    return factory()


def after_fork_in_child(callback: Callable[[], None]) -> None:
    """Call ``callback`` in every forked child, after its locks are new (a thread it starts finds them free)."""
    _callbacks.append(callback)


@contextlib.contextmanager
def importing() -> Iterator[None]:
    """Hold forks back while the block runs (the export worker's deferred imports)."""
    with _importing:
        yield


def _before_fork() -> None:
    global _held_for_fork
    _held_for_fork = _importing.acquire(timeout=FORK_WAIT)


def _after_fork_in_parent() -> None:
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _importing.release()


def _renew_in_child() -> None:
    global _owners_lock, _importing, _held_for_fork
    _owners_lock = threading.Lock()
    _importing, _held_for_fork = threading.Lock(), False
    for owner, attributes in list(_owners.items()):
        for attribute, factory in attributes.items():
            setattr(owner, attribute, factory())
    for callback in _callbacks:
        callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_renew_in_child)
