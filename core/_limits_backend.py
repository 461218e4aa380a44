"""Where a monitor keeps its rolling windows: in this process (default) or shared through Redis.

``init(limits_backend="redis://host:6379/0")`` (env ``AGENTWATCH_LIMITS_BACKEND``) makes every scope's
windows fleet-wide; without it each monitor uses a ``LocalWindowStore``.
"""

from __future__ import annotations

from ._config import Config
from ._windows import WindowStore

__all__ = ["window_store_for"]


def window_store_for(config: Config, scope: str, scope_id: str) -> WindowStore | None:
    """The store for one monitor, or None for the in-process default."""
    if not config.limits_backend:
        return None
    raise ValueError(f"limits_backend: unsupported backend {config.limits_backend!r}")
