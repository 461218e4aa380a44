"""The AgentWatch collector: ingest, storage, REST API, alerts, signed reports and the dashboard.

Run it with ``agentwatch serve``, or from Python::

    from agentwatch.server import start_background
    handle = start_background(port=3001, db_path="agentwatch.db")
    ...
    handle.stop()
"""

from __future__ import annotations

from ._app import create_app
from ._background import ServerHandle, start_background
from ._clickhouse import ClickHouseStore
from ._model import SpanRecord
from ._settings import Settings
from ._sqlite import SQLiteStore
from ._store import IngestResult, Store, TraceQuery

__all__ = [
    "create_app",
    "start_background",
    "ServerHandle",
    "Settings",
    "Store",
    "SQLiteStore",
    "ClickHouseStore",
    "SpanRecord",
    "TraceQuery",
    "IngestResult",
]
