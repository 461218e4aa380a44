"""AgentWatch for classic AG2 (``from autogen import ConversableAgent``, ag2 0.x).

Zero-config: after ``agentwatch.init()`` every LLM request of every agent (and of ``OpenAIWrapper``) is
checked before it is sent and recorded, as the model of the config that sent it, with its agent as agent scope,
the chat and the tool calls around it; AG2's completion reports (made for its runtime log, which stays the
application's) supply its own cost figure and the cache hits (which cost nothing and count toward no limit).
Explicit: ``watch(agent)`` (or ``watch(openai_wrapper)``) for what zero-config does not reach.
"""

from __future__ import annotations

from typing import Any

__all__ = ["watch", "unwatch"]


def _wrapper_of(target: Any) -> Any:
    # An agent carries its OpenAIWrapper as ``client`` (None for an agent without an LLM).
    return target.client if hasattr(target, "client") and hasattr(target, "generate_reply") else target


def watch(target: Any) -> Any:
    """Watch one agent's LLM calls (or one ``OpenAIWrapper``'s) and return ``target``.

    Idempotent and never counted twice with zero-config; inert while AgentWatch is not running.
    """
    from ._llm import watch_wrapper  # here: init() loads this package whether or not AG2 is used

    wrapper = _wrapper_of(target)
    if wrapper is not None:
        watch_wrapper(wrapper)
    return target


def unwatch(target: Any) -> Any:
    from ._llm import unwatch_wrapper

    wrapper = _wrapper_of(target)
    if wrapper is not None:
        unwatch_wrapper(wrapper)
    return target
