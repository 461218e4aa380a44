"""AgentWatch's before-LLM-call hook stays registered while AgentWatch is installed.

CrewAI's documented way to reset hooks (``crewai.hooks.clear_all_global_hooks()``,
``clear_before_llm_call_hooks()``, ``crewai.hooks.dispatch.clear_all()``, which CrewAI's own test suite runs before
each test) empties the one global list, ours included. Without our hook only the HTTP layer saw the calls: in no
agent's scope (per-agent limits never blocked) and recorded a second time, beside the span CrewAI's events make.
So a kickoff, and each LLM call as it is announced (before CrewAI dispatches its hooks), puts ours back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from crewai.hooks import register_before_llm_call_hook
from crewai.hooks.dispatch import InterceptionPoint, get_global_hook_list

__all__ = ["keep", "let_go", "put_back"]

#: The live list CrewAI dispatches (not a copy): checking it costs a call no allocation.
_REGISTERED = get_global_hook_list(InterceptionPoint.PRE_MODEL_CALL)
_lock = threading.Lock()
_kept: Callable[[Any], Any] | None = None


def keep(hook: Callable[[Any], Any]) -> None:
    """From now on ``put_back`` registers ``hook`` again whenever the program cleared it."""
    global _kept
    _kept = hook


def let_go() -> None:
    """AgentWatch is uninstalled: its hook is no longer put back."""
    global _kept
    _kept = None


def put_back() -> None:
    """Register the kept hook again if the program cleared CrewAI's hooks since (last in line, as registered)."""
    hook = _kept
    if hook is None or hook in _REGISTERED:
        return
    with _lock:
        if _kept is hook and hook not in _REGISTERED:
            register_before_llm_call_hook(hook)
