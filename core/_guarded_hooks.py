"""Each plugin's hook implementations, called so that one plugin's error stays its own.

pluggy stops a hook call at the first implementation that raises and hands the error to the caller: a span
listener's bug raised where a span starts or ends (before the limit check, or in place of the block being recorded),
a price hook's bug where a call is charged, an ``agentwatch_uninstrument`` bug in the middle of ``shutdown()``. Each
implementation is wrapped once, when it is registered (before a historic hook is replayed to it): its error is logged
(the first one with its traceback, later ones at DEBUG) and the call goes on to the other implementations as if it
had answered None. The cost is one Python frame per implementation called; a hook no plugin implements is not called
at all (the client keeps a flag per hot hook).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._safe import _is_pass_through, logger

__all__ = ["guard", "UNGUARDED_HOOKS", "START_HOOKS"]

#: Hooks whose errors go to the caller: building an exporter the program named in ``init(exporters=[...])`` is its
#: configuration (an unknown name raises there too).
UNGUARDED_HOOKS = frozenset({"agentwatch_make_exporter"})

#: A plugin that fails in one of these has not started: the client leaves it out (``PluginManager.failed``).
START_HOOKS = frozenset({"agentwatch_configure", "agentwatch_instrument"})


def _price_answer(answer: Any, plugin_name: str) -> Any:
    """``agentwatch_price``'s answer as a ``Price``: a ``Price``, or a number (USD, not an estimate); else TypeError."""
    from ._pricing import Price

    cost = answer.cost_usd if isinstance(answer, Price) else answer
    if cost.__class__ not in (int, float) or not 0 <= cost < math.inf:
        raise TypeError(f"agentwatch_price returned {answer!r}: expected a Price, a number of USD, or None "
                        "(the built-in price is used)")
    return answer if isinstance(answer, Price) else Price(float(cost), False, plugin_name)


#: Hooks whose implementations' answers are checked (and normalised) before they are used: a wrong one is an error
#: of the plugin, logged as one, and the hook goes on as if it had answered None.
_ANSWERS: dict[str, Callable[[Any, str], Any]] = {"agentwatch_price": _price_answer}


def guard(hook_name: str, function: Callable[..., Any], plugin: Any, plugin_name: str,
          failed: list[tuple[Any, str]]) -> Callable[..., Any]:
    """``function`` (a plugin's implementation of ``hook_name``) as it is called: an error (or a wrong answer) is
    logged and the call answers None. A failure in a ``START_HOOKS`` hook is noted in ``failed``; such a plugin's
    later start hooks are not called."""
    starting = hook_name in START_HOOKS
    answer_of = _ANSWERS.get(hook_name)
    errors = 0

    def guarded(*args: Any, **kwargs: Any) -> Any:
        nonlocal errors
        if starting and any(entry is plugin for entry, _hook in failed):
            return None  # its configure failed: it is not instrumented either
        try:
            answer = function(*args, **kwargs)
            if answer_of is not None and answer is not None:
                answer = answer_of(answer, plugin_name)
            return answer
        except Exception as error:
            if _is_pass_through(error):  # a block, or a framework's control flow: not an error of the plugin
                raise
            errors += 1
            if starting:
                failed.append((plugin, hook_name))
                logger.error("agentwatch: plugin %r failed in %s and is not used", plugin_name, hook_name,
                             exc_info=True)
            elif errors == 1:
                logger.error("agentwatch: plugin %r failed in %s (ignored; AgentWatch carries on without its answer, "
                             "and further errors of this hook are logged at DEBUG)", plugin_name, hook_name,
                             exc_info=True)
            else:
                logger.debug("agentwatch: plugin %r failed in %s again (%d times): %s", plugin_name, hook_name,
                             errors, error)
            return None

    guarded.__wrapped__ = function  # type: ignore[attr-defined]
    guarded._agentwatch_guarded = True  # type: ignore[attr-defined]
    return guarded
