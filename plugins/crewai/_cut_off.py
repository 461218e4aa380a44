"""A CrewAI LLM call its program cuts off (a cancelled ``acall``, Ctrl-C) ends its span.

CrewAI reports an LLM call's end by events: completed, or failed for an ``Exception``. A cancelled task or a
``KeyboardInterrupt`` leaves ``LLM.call``/``acall`` with no event, so the call our hook opened never ended: no span,
nothing charged (the HTTP layer's estimate of the prompt sent is applied at the end), and a hard budget's reservation
held. Every CrewAI LLM's ``call``/``acall`` runs inside ``llm_call_context()``: leaving it by such an error ends the
call its hook activated in that context (``on_cut_off``).

Each LLM module imports the function by name: the base module's attribute is replaced (for modules imported later)
and so is every binding of it in the CrewAI modules already imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from crewai.llms import base_llm

from agentwatch.instrumentation import swallow_internal_error
from agentwatch.plugins.http._patching import Patcher

__all__ = ["patch", "unpatch"]

_PATCHER = Patcher()
_NAME = "llm_call_context"


def patch(on_cut_off: Callable[[BaseException], None]) -> None:
    original = getattr(base_llm, _NAME, None)
    if original is None:  # another CrewAI layout: a cut-off call stays open, as before
        return
    holders = [module for name, module in list(sys.modules.items())
               if name.startswith("crewai") and getattr(module, _NAME, None) is original]
    for module in holders:
        _PATCHER.replace(module, _NAME, lambda context: _ending_cut_off_calls(context, on_cut_off))


def unpatch() -> None:
    _PATCHER.restore()


def _ending_cut_off_calls(original: Callable[[], Any],
                          on_cut_off: Callable[[BaseException], None]) -> Callable[[], Any]:
    def llm_call_context() -> _EndingCutOffCall:
        # Built field by field, not by calling the class: CPython 3.11 runs a Python ``__init__`` through
        # ``type.__call__`` and a frame of its own, for every LLM call.
        guard = _new_object(_EndingCutOffCall)
        guard._context = original()
        guard._on_cut_off = on_cut_off
        return guard

    return llm_call_context


_new_object = object.__new__


class _EndingCutOffCall:
    """CrewAI's ``llm_call_context()`` around one call, ending that call if it is left by a cut-off.

    A class rather than a ``@contextlib.contextmanager`` generator around CrewAI's own context: every LLM call enters
    it, and the generator's context manager (its ``__init__``, the generator's frames) cost ~90 more bytecodes."""

    __slots__ = ("_context", "_on_cut_off")

    _context: AbstractContextManager[Any]
    _on_cut_off: Callable[[BaseException], None]

    def __enter__(self) -> Any:
        return self._context.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool | None:
        # An Exception is reported by CrewAI's LLMCallFailedEvent. The call ends while CrewAI's context still
        # names it (``_cut_off_here`` compares the call ids), as it did inside that context.
        if error is not None and not isinstance(error, Exception):
            try:
                self._on_cut_off(error)
            except Exception:
                swallow_internal_error("the crewai plugin")
        return self._context.__exit__(kind, error, traceback)
