"""Locks that a forked child gets back released.

A lock that another thread holds at the moment of a fork stays held in the child, where that thread does not exist:
the child's first call that needs it waits forever (a thread in the middle of an LLM call holds its monitor's lock
while the main thread forks a worker pool). ``fork_safe_lock`` makes a lock and has every forked child put a new one
in its place on its owner: an object, or a module for a module-level lock.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["fork_safe_lock", "after_fork_in_child"]

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


def _renew_in_child() -> None:
    global _owners_lock
    _owners_lock = threading.Lock()
    for owner, attributes in list(_owners.items()):
        for attribute, factory in attributes.items():
            setattr(owner, attribute, factory())
    for callback in _callbacks:
        callback()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_in_child)
