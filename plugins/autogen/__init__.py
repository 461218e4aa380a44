"""AgentWatch for AutoGen AgentChat (autogen-core / autogen-agentchat 0.7: ``pip install pyautogen``).

Zero-config: after ``agentwatch.init()`` every ``ChatCompletionClient`` (whenever it was created) is
checked before each request and recorded, with its ``AssistantAgent`` as agent scope, the team run
and the tool calls around it. Explicit: ``watch(model_client)`` for a client zero-config does not
reach. A block inside a ``RoundRobinGroupChat`` / ``SelectorGroupChat`` reaches ``team.run()`` as
``CircuitBreakerException``; for a team on a runtime you started yourself, ``unwrap_blocked(error)``
gives it back from the ``RuntimeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._blocked import unwrap_blocked
    from ._model_client import is_watched, unwatch, watch

__all__ = ["watch", "unwatch", "is_watched", "unwrap_blocked"]


def __getattr__(name: str) -> Any:
    # Lazily: init() loads this package's entry point whether or not AutoGen is used, and the glue imports asyncio.
    if name == "unwrap_blocked":
        from . import _blocked

        return _blocked.unwrap_blocked
    if name in ("watch", "unwatch", "is_watched"):
        from . import _model_client

        return getattr(_model_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
