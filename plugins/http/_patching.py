"""Replacing methods on library classes, and putting every original back on shutdown."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Patcher", "taking_keywords", "NOT_GIVEN"]

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


class _NotGiven:
    """A keyword the caller did not give (falsy, as a missing ``stream`` means not streamed)."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<not given>"


NOT_GIVEN: Any = _NotGiven()


def taking_keywords(original: Callable[..., Any], **defaults: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    """What a wrapper that declares these keywords and passes them on by name should call, and its defaults.

    ``(original, defaults)`` if ``original`` takes each of them by name with that default (checked once, at patch
    time): passing a default by name is then the same as leaving it out. For any other signature (another
    instrumentation's ``def request(*args, **kwargs)``, an older SDK) the defaults are ``NOT_GIVEN``, and a function
    that leaves those out calls ``original``: it gets exactly the keywords the caller gave.

    Forwarding ``*args, **kwargs`` instead builds a new dict for every call and makes the callee match it to its
    parameters again: ~0.2 us per wrapped call, and the SDK request and the httpx send it makes are two such calls
    on every LLM call."""
    try:
        parameters = inspect.signature(original).parameters
    except (TypeError, ValueError):  # no signature to read
        parameters = None
    if parameters is not None and all(
            name in parameters and parameters[name].kind in _BY_NAME and parameters[name].default is default
            for name, default in defaults.items()):
        return original, defaults
    names = tuple(defaults)

    def given_only(*args: Any, **kwargs: Any) -> Any:
        for name in names:
            if kwargs.get(name) is NOT_GIVEN:
                del kwargs[name]
        return original(*args, **kwargs)

    return given_only, dict.fromkeys(names, NOT_GIVEN)
