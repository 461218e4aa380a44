"""OpenAI Agents SDK runs traced and guarded: nothing to import, ``agentwatch.init()`` instruments ``agents``.

A block raised before a model call carries ``e.resume`` (:class:`BlockedTurn`): the agent that was about to
call its model and that call's whole input, so ``Runner.run(e.resume.agent, e.resume.input)`` continues the
run after a recovery without repeating its finished turns.
"""

from __future__ import annotations

from ._turns import BlockedTurn

__all__ = ["BlockedTurn"]
