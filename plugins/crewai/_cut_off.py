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

import contextlib
import sys
from collections.abc import Callable, Iterator
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
    @contextlib.contextmanager
    def llm_call_context() -> Iterator[Any]:
        with original() as call_id:
            try:
                yield call_id
            except BaseException as error:
                if not isinstance(error, Exception):  # an Exception is reported by CrewAI's LLMCallFailedEvent
                    try:
                        on_cut_off(error)
                    except Exception:
                        swallow_internal_error("the crewai plugin")
                raise

    return llm_call_context
