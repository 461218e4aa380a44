"""Replacing methods on library classes, and putting every original back on shutdown."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Patcher", "taking_keywords"]

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


_BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def taking_keywords(original: Callable[..., Any], **defaults: Any) -> Callable[..., Any]:
    """``original`` itself if it takes each of ``defaults`` by name with that default (checked once, at patch time);
    else a function that does, passing on to ``original`` only those given another value.

    A wrapper can then declare these keywords and forward them by name. Forwarding ``*args, **kwargs`` instead
    builds a new dict for every call and makes the callee match it to its parameters again: ~0.2 us per wrapped
    call, and the SDK request and the httpx send it makes are two such calls on every LLM call."""
    try:
        parameters = inspect.signature(original).parameters
    except (TypeError, ValueError):  # no signature to read: adapt, which is right for any signature
        parameters = None
    if parameters is not None and all(
            name in parameters and parameters[name].kind in _BY_NAME and parameters[name].default is default
            for name, default in defaults.items()):
        return original

    def adapted(*args: Any, **kwargs: Any) -> Any:
        for name, default in defaults.items():
            if kwargs.get(name, default) is default:
                kwargs.pop(name, None)
        return original(*args, **kwargs)

    return adapted
