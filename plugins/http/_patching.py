"""Replacing methods on library classes, and putting every original back on shutdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Patcher"]

_MISSING = object()


class Patcher:
    """Records each replacement so ``restore()`` leaves the classes exactly as they were."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def replace(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Set ``owner.name`` to ``make(original)``; once per attribute, however often it is asked."""
        if any(saved_owner is owner and saved_name == name for saved_owner, saved_name, _ in self._saved):
            return
        defined_here = owner.__dict__.get(name, _MISSING)
        original = getattr(owner, name)
        replacement = make(original)
        replacement.__wrapped__ = original
        setattr(owner, name, replacement)
        self._saved.append((owner, name, defined_here))

    def restore(self) -> None:
        while self._saved:
            owner, name, defined_here = self._saved.pop()
            if defined_here is _MISSING:
                delattr(owner, name)  # it was inherited: uncover the base class's again
            else:
                setattr(owner, name, defined_here)
