"""The blocks raised while a plugin watches code whose framework makes any error of it a text.

Some frameworks run a tool inside ``except Exception`` and keep only ``str(error)`` (AG2's ``execute_function``
returns ``"Error: <message>"``): a block raised in the tool (an agent used as a tool, the tool's own LLM call with
the openai SDK) is then lost to everything above, and the text goes to the model in the next, paid, request. A
plugin enters ``BlocksMet`` around such code; every block raised under it (in this context, and in code ``carry``
takes to another thread) is kept there, so the plugin can raise the block whose text the framework made, above the
framework's ``except``.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

from ._context import CARRIED

if TYPE_CHECKING:
    from ._breaker_contract import CircuitBreakerException

__all__ = ["BlocksMet", "note_block_met"]

_WATCHING: ContextVar[BlocksMet | None] = ContextVar("agentwatch_blocks_met", default=None)
CARRIED.append(_WATCHING)


class BlocksMet:
    """Entered (``with``): the blocks raised inside, most recent last; a block counts in every enclosing one too."""

    __slots__ = ("blocks", "_outer", "_token")

    def __init__(self) -> None:
        self.blocks: list[CircuitBreakerException] = []
        self._outer: BlocksMet | None = None
        self._token: Token[BlocksMet | None] | None = None

    def __enter__(self) -> BlocksMet:
        self._outer = _WATCHING.get()
        self._token = _WATCHING.set(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._token is not None:
            _WATCHING.reset(self._token)
            self._token = None

    def named_by(self, message: object) -> CircuitBreakerException | None:
        """The block met here whose message is ``message`` (what the framework kept of the error), or None."""
        for blocked in reversed(self.blocks):
            if str(blocked) == message:
                return blocked
        return None


def note_block_met(blocked: CircuitBreakerException) -> None:
    """Called where a block is raised: kept by every ``BlocksMet`` entered in this context."""
    watching = _WATCHING.get()
    while watching is not None:
        watching.blocks.append(blocked)
        watching = watching._outer
