"""Which store the collector runs on: the one place that turns settings into a ``Store``.

``create_app`` (and so ``serve``, ``start_background`` and the worker processes of ``serve --workers``) opens
its store here, so an app built from the environment runs on the store ``AGENTWATCH_STORE`` names.
"""

from __future__ import annotations

from ._settings import Settings
from ._store import Store

__all__ = ["open_store", "store_location"]


def open_store(settings: Settings) -> Store:
    """ClickHouse when ``settings.store_url`` is set (``chdb:///dir`` or ``clickhouse://host:8123/db``), else the
    SQLite file ``settings.db_path``. The caller owns (closes) the store."""
    if settings.store_url:
        from ._clickhouse import ClickHouseStore  # chdb / the driver are imported only for ClickHouse stores

        return ClickHouseStore(settings.store_url)
    from ._sqlite import SQLiteStore

    return SQLiteStore(settings.db_path, synchronous=settings.synchronous)


def store_location(settings: Settings) -> str:
    """Where the data is, for messages: the store URL without its password, or the SQLite file."""
    if not settings.store_url:
        return str(settings.db_path)
    scheme, sep, rest = settings.store_url.partition("://")
    return scheme + sep + ("***@" + rest.rsplit("@", 1)[1] if "@" in rest else rest)
