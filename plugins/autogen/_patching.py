"""Wrap methods on AutoGen's base classes and on every subclass that defines its own, made before or later.

AutoGen's extension points are abstract base classes (``ChatCompletionClient``, ``BaseChatAgent``,
``BaseTool``, ``BaseGroupChat``): each concrete subclass defines the method itself, so wrapping the base
alone would miss every real call. All of them derive from autogen-core's ``ComponentBase``, so one
``__init_subclass__`` there sees every class defined later (a user's own client, or AgentChat's
classes when AgentChat is imported after ``init()``, even half-way through its own import), and the
subclass tree gives the ones that exist. A target is named, not imported: AgentChat need not be
loaded. ``uninstall()`` puts every original back.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from agentwatch.instrumentation import logger, stop_on_exception

__all__ = ["SubclassPatcher", "Target", "ORIGINAL"]

#: Attribute on every wrapper naming the function it replaced.
ORIGINAL = "__agentwatch_original__"

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]
#: (top-level package, class name, {method name: wrapper factory}): that class and its subclasses.
Target = tuple[str, str, Mapping[str, Wrap]]


def _subclasses(root: type) -> Iterator[type]:
    seen: set[type] = set()
    pending = [root]
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        pending.extend(cls.__subclasses__())


def _matches(cls: type, package: str, name: str) -> bool:
    return any(base.__qualname__ == name and (base.__module__ + ".").startswith(package + ".")
               for base in cls.__mro__)


class SubclassPatcher:
    """Patches, below ``root``, every class deriving from a target class (the target included)."""

    def __init__(self, root: type, targets: list[Target]) -> None:
        self._root = root
        self._targets = list(targets)
        self._patched: list[tuple[type, str, Callable[..., Any], Callable[..., Any]]] = []
        self._root_hook: Any = None
        self._installed = False

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        for cls in _subclasses(self._root):
            self._patch_class(cls)
        self._hook_future_subclasses()

    def uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        root = self._root
        if self._root_hook is None:
            if "__init_subclass__" in root.__dict__:
                delattr(root, "__init_subclass__")
        else:
            root.__init_subclass__ = self._root_hook  # type: ignore[method-assign]
        self._root_hook = None
        for cls, name, original, wrapper in reversed(self._patched):
            if cls.__dict__.get(name) is wrapper:
                setattr(cls, name, original)
        self._patched.clear()

    @stop_on_exception
    def _patch_class(self, cls: type) -> None:
        for package, class_name, wrappers in self._targets:
            if _matches(cls, package, class_name):
                self._patch_methods(cls, wrappers)

    def _patch_methods(self, cls: type, wrappers: Mapping[str, Wrap]) -> None:
        for name, wrap in wrappers.items():
            original = cls.__dict__.get(name)
            # Abstract declarations and non-functions (properties, static methods) are left alone.
            if not inspect.isfunction(original) or getattr(original, "__isabstractmethod__", False):
                continue
            if hasattr(original, ORIGINAL):
                continue
            wrapper = wrap(original)
            if wrapper is original:  # the factory leaves this one alone
                continue
            setattr(wrapper, ORIGINAL, original)
            setattr(cls, name, wrapper)
            self._patched.append((cls, name, original, wrapper))
            logger.debug("agentwatch: wrapped %s.%s", cls.__qualname__, name)

    def _hook_future_subclasses(self) -> None:
        root = self._root
        own = root.__dict__.get("__init_subclass__")
        self._root_hook = own
        patcher = self

        def __init_subclass__(cls: type, **kwargs: Any) -> None:  # noqa: N807 - the protocol's name
            if own is not None:
                own.__func__(cls, **kwargs)
            else:
                super(root, cls).__init_subclass__(**kwargs)  # type: ignore[misc,arg-type]
            if patcher._installed:
                patcher._patch_class(cls)

        root.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment,method-assign]
