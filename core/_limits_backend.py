"""Where a monitor keeps its rolling windows: in this process (default) or shared through Redis.

``init(limits_backend="redis://host:6379/0")`` (env ``AGENTWATCH_LIMITS_BACKEND``) makes every scope's
windows and breaker state fleet-wide; without it each monitor uses a ``LocalWindowStore``. Accepted:
``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs. ``limits_fallback`` (env
``AGENTWATCH_LIMITS_FALLBACK``) says what happens while the backend is unreachable: ``"local"`` enforces
per process, ``"block"`` blocks every call. See ``_redis_windows`` for what is shared and the fallback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: _config is imported by init(), not by ``import agentwatch``
    from ._config import Config
    from ._windows import WindowStore

__all__ = ["window_store_for", "REDIS_SCHEMES"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def window_store_for(config: Config, scope: str, scope_id: str) -> WindowStore | None:
    """The store for one monitor, or None for the in-process default."""
    url = config.limits_backend
    if not url:
        return None
    if url.startswith(REDIS_SCHEMES):
        # Imported here: the redis package is an extra, and processes without a backend never need it.
        from ._redis_windows import RedisWindowStore, backend_for

        return RedisWindowStore(backend_for(url), scope, scope_id, fallback=config.limits_fallback)
    raise ValueError(f"limits_backend: unsupported backend {url!r} (expected redis://, rediss:// or unix://)")
