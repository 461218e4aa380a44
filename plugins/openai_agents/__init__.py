"""OpenAI Agents SDK runs traced and guarded: nothing to import, ``agentwatch.init()`` instruments ``agents``.

A block raised before a model call carries ``e.resume`` (:class:`BlockedTurn`): the agent that was about to
call its model and what a run must be given to send that call again, so
``Runner.run(e.resume.agent, e.resume.input, **e.resume.run_kwargs)`` (with the run's ``session=``, if it had
one) continues the run after a recovery without repeating its finished turns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._turns import BlockedTurn

__all__ = ["BlockedTurn"]


def __getattr__(name: str) -> Any:
    # Lazy: init() imports this package for its entry point (``_plugin``) whether or not the Agents SDK is
    # used, and ``_turns`` (dataclasses, the instrumentation API) is ~2 ms of that.
    if name == "BlockedTurn":
        from ._turns import BlockedTurn

        return BlockedTurn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
